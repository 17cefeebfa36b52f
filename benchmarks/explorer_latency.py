"""Retrieval explorer benchmark: how long one prompt takes to answer on CPU.

    python benchmarks/explorer_latency.py                        # 10,000 and 100,000 images
    python benchmarks/explorer_latency.py --gallery 1000000 --queries 10

A query of `cf_hf.explorer.Explorer.search` embeds the prompt with the model's text tower, scores
the stored gallery embeddings (a memory-mapped `.npy`, as the evaluation harness's cache holds them),
selects the top-k, counts the attribute shares and computes MaxSkew and NDKL, for every model shown.
The text tower has ViT-B/32 CLIP's shape (12 layers x 512, projection 512; random weights, same
cost; a small vocabulary, whose lookup costs nothing); the gallery is synthetic unit-norm
embeddings with a 2-value and a 7-value attribute. Each query is a new prompt (no text-cache hit). Reported: the median and worst latency over the queries
for one model, the prompt's text embedding alone, and two models side by side (the page's case), as
CPU time (the work) and wall time (what a user waits, including any wait for a core).

    OPENBLAS_NUM_THREADS=1 python benchmarks/explorer_latency.py --threads 1   # one core's work
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

PROFESSIONS = ("doctor", "nurse", "chef", "firefighter", "pilot", "teacher", "farmer", "lawyer", "engineer",
               "cashier", "mechanic", "judge", "baker", "dentist", "plumber", "scientist")
TEMPLATES = ("a photo of a {}", "a portrait of a {}", "a {} at work")


def _prompts(count: int) -> list[str]:
    prompts = [template.format(name) for template in TEMPLATES for name in PROFESSIONS]
    if count > len(prompts):
        raise SystemExit(f"--queries: at most {len(prompts)} distinct prompts")
    return prompts[:count]


def _text_model():
    """A randomly initialised CLIP whose text tower has ViT-B/32's shape, and its processor."""
    from cf_hf.utils.tiny_clip import TinyCLIPSpec, build_tiny_clip

    spec = TinyCLIPSpec(image_size=32, patch_size=16, vision_width=64, vision_layers=1, vision_heads=2,
                        text_width=512, text_layers=12, text_heads=8, projection_dim=512)
    return build_tiny_clip(_prompts(len(PROFESSIONS) * len(TEMPLATES)), spec=spec)


def _encoder(model, processor):
    """prompt -> embedding through a fresh `EmbeddingEngine` (own empty cache: no prompt is a cache hit;
    its text-tower hash, computed once per engine, is taken before timing)."""
    from cf_hf.evaluation import EmbeddingCache, EmbeddingConfig, EmbeddingEngine

    engine = EmbeddingEngine(model, processor, EmbeddingConfig(progress=False), cache=EmbeddingCache(None))
    engine.text_fingerprint  # noqa: B018

    def encode(prompt: str) -> np.ndarray:
        return engine.embed_texts([prompt])[0]

    return encode


def _synthetic_gallery(path: Path, n_images: int, dim: int, dtype: str, seed: int = 0) -> np.ndarray:
    """Unit-norm embeddings written chunk by chunk into a memory-mapped .npy, read back memory-mapped."""
    rng = np.random.default_rng(seed)
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n_images, dim))
    for start in range(0, n_images, 65536):
        chunk = rng.standard_normal((min(65536, n_images - start), dim), dtype=np.float32)
        array[start:start + len(chunk)] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    array.flush()
    del array
    return np.load(path, mmap_mode="r")


def _latencies(function, prompts, count: int, *args) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds of `function(prompt, *args)` for the next `count` prompts. On a
    shared machine the wall time includes waiting for a core; the CPU time is the work itself."""
    wall, cpu = [], []
    for _ in range(count):
        prompt = next(prompts)
        start, start_cpu = time.perf_counter(), time.process_time()
        function(prompt, *args)
        wall.append(1000 * (time.perf_counter() - start))
        cpu.append(1000 * (time.process_time() - start_cpu))
    return wall, cpu


def benchmark(folder: Path, sizes: list[int], dtypes: list[str], ks: list[int], queries: int) -> list[tuple]:
    from cf_hf.explorer import Explorer, ExplorerModel

    model, processor = _text_model()
    rng = np.random.default_rng(1)
    rows = []
    for size in sizes:
        attributes = {"gender": rng.integers(0, 2, size).astype(str).tolist(),
                      "race": rng.integers(0, 7, size).astype(str).tolist()}
        for dtype in dtypes:
            embeddings = _synthetic_gallery(folder / f"gallery-{size}-{dtype}.npy", size, 512, dtype)
            for k in ks:
                one = Explorer({"model": ExplorerModel(embeddings, _encoder(model, processor))}, attributes)
                two = Explorer({"original": ExplorerModel(embeddings, _encoder(model, processor)),
                                "cf": ExplorerModel(embeddings, _encoder(model, processor))}, attributes)
                one.search("a photo of a person", k, "race")  # reads the file into the page cache
                single, single_cpu = _latencies(one.search, iter(_prompts(queries)), queries, k, "race")
                text, text_cpu = _latencies(_encoder(model, processor), iter(_prompts(queries)), queries)
                pair, pair_cpu = _latencies(two.search, iter(_prompts(queries)), queries, k, "race")
                rows.append((f"{size:,}", dtype, k, statistics.median(text_cpu), statistics.median(single_cpu),
                             statistics.median(single), max(single), statistics.median(pair_cpu),
                             statistics.median(pair), max(pair)))
    return rows


def _table(header: list[str], rows: list[tuple]) -> str:
    def cell(value):
        return f"{value:.1f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gallery", type=int, nargs="+", default=[10_000, 100_000], help="gallery sizes")
    parser.add_argument("--storage_dtype", nargs="+", default=["float32", "float16"], help="stored embedding dtypes")
    parser.add_argument("--k", type=int, nargs="+", default=[24, 1000], help="cut-offs")
    parser.add_argument("--queries", type=int, default=10, help="distinct prompts timed per row and case")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's choice)")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        rows = benchmark(Path(scratch), args.gallery, args.storage_dtype, args.k, args.queries)
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}; {args.queries} prompts per cell; "
          "medians and worst (max) in ms")
    print(_table(["gallery", "stored as", "k", "prompt embedding CPU", "1 model CPU", "1 model wall",
                  "1 model wall worst", "2 models CPU", "2 models wall", "2 models wall worst"], rows))


if __name__ == "__main__":
    main()
