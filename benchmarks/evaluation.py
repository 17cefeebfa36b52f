"""Evaluation harness benchmark: embedding throughput and the memory bound of fairness at scale.

    python benchmarks/evaluation.py                      # the full run (1M x 512 gallery)
    python benchmarks/evaluation.py --gallery 200000     # smaller gallery
    python benchmarks/evaluation.py --skip_embedding

1. Images/s through `EmbeddingEngine.embed_images` (PIL decode from JPEG files on disk,
   `CLIPImageProcessor`, the vision tower, normalization) on CPU, for the tests' tiny CLIP and for a
   randomly initialised CLIP of ViT-B/32's shape (224 px, patch 32, 12 x 768 vision layers,
   projection 512).
2. Fairness over a synthetic gallery of stored embeddings (default 1,000,000 x 512, float16,
   memory-mapped `.npy` as the engine's cache writes it) with the default protocol's query count
   (43 concepts x 5 templates = 215 queries), 3 attributes (2, 7 and 9 values), k = 1000, both
   desired distributions: wall time, and the memory it takes — peak anonymous memory (heap; the
   memory-mapped gallery is file-backed and not counted) above the level before the call, sampled
   every 5 ms, and the numpy peak traced by tracemalloc. Run at two score-block bounds to show the
   peak follows the bound, not the gallery or the number of queries.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np

ATTRIBUTE_SIZES = {"gender": 2, "race": 7, "age": 9}
SAMPLE_SECONDS = 0.005


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class PeakMemory:
    """Peak anonymous RSS (MiB) above the level at entry, sampled in a thread; plus tracemalloc."""

    def __enter__(self):
        self.base = _status_kib("RssAnon")
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        tracemalloc.start()
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _status_kib("RssAnon"))
            time.sleep(SAMPLE_SECONDS)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_kib("RssAnon"))
        self.traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        self.extra_mib = (self.peak - self.base) / 1024
        self.traced_mib = self.traced_peak / 2**20


# ---------------------------------------------------------------------------------------------
# 1. Embedding throughput


def _write_images(folder: Path, count: int, size: int) -> list[str]:
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        path = folder / f"{index}.jpg"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path, quality=90)
        paths.append(str(path))
    return paths


def benchmark_embedding(folder: Path, tiny_images: int, vit_images: int, batch_size: int,
                        num_workers: int) -> list[tuple]:
    from cf_hf.evaluation import EmbeddingConfig, EmbeddingEngine
    from cf_hf.utils.tiny_clip import TinyCLIPSpec, build_tiny_clip

    corpus = [f"a photo of a {word}" for word in ("doctor", "nurse", "chef", "pilot", "teacher", "farmer")]
    specs = {
        "tiny (32 px, 2x32 vision)": (TinyCLIPSpec(), tiny_images),
        "ViT-B/32 shape (224 px, 12x768)": (TinyCLIPSpec(
            image_size=224, patch_size=32, vision_width=768, vision_layers=12, vision_heads=12,
            text_width=512, text_layers=12, text_heads=8, projection_dim=512), vit_images),
    }
    images = sorted(str(path) for path in folder.glob("*.jpg")) or _write_images(folder, max(tiny_images, vit_images), 256)
    rows = []
    for name, (spec, count) in specs.items():
        model, processor = build_tiny_clip(corpus, spec=spec)
        parameters = sum(parameter.numel() for parameter in model.parameters()) / 1e6
        engine = EmbeddingEngine(model, processor, EmbeddingConfig(batch_size=batch_size, progress=False,
                                                                   num_workers=num_workers))
        engine.embed_images(images[:batch_size], fingerprint="warm-up")  # first-call overheads
        started = time.perf_counter()
        embeddings = engine.embed_images(images[:count], fingerprint=f"run-{count}")
        seconds = time.perf_counter() - started
        rows.append((name, f"{parameters:.1f}M", count, embeddings.shape[1], seconds, count / seconds))
        del engine, model
    return rows


# ---------------------------------------------------------------------------------------------
# 2. Fairness at gallery scale


def _synthetic_gallery(path: Path, n_images: int, dim: int, seed: int = 0) -> np.ndarray:
    """Unit-norm float16 embeddings written chunk by chunk into a memory-mapped .npy."""
    rng = np.random.default_rng(seed)
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n_images, dim))
    step = 65536
    for start in range(0, n_images, step):
        chunk = rng.standard_normal((min(step, n_images - start), dim), dtype=np.float32)
        array[start:start + len(chunk)] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    array.flush()
    del array
    return np.load(path, mmap_mode="r")


def benchmark_fairness(folder: Path, n_images: int, dim: int, block_mbs: list[int]) -> tuple[list[tuple], dict]:
    from cf_hf.evaluation import (
        AttributeGallery,
        FairnessConfig,
        build_queries,
        evaluate_fairness,
        protocol_defaults,
    )

    rng = np.random.default_rng(1)
    started = time.perf_counter()
    images = _synthetic_gallery(folder / "gallery.npy", n_images, dim)
    build_seconds = time.perf_counter() - started
    attributes = {name: rng.integers(0, size, n_images).astype(str).tolist() for name, size in ATTRIBUTE_SIZES.items()}
    gallery = AttributeGallery(images=range(n_images), attributes=attributes, name="synthetic")
    queries = build_queries(None, protocol_defaults()["fairness_templates"])
    text = rng.standard_normal((len(queries), dim)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    rows, results = [], {}
    for block_mb in block_mbs:
        config = FairnessConfig(ks=[1000], score_block_mb=block_mb)
        with PeakMemory() as memory:
            started = time.perf_counter()
            results[block_mb] = evaluate_fairness(text, images, gallery, queries, config)
            seconds = time.perf_counter() - started
        rows.append((block_mb, len(queries), seconds, 1000 * seconds / len(queries), memory.extra_mib, memory.traced_mib))
    same = all(results[block_mb] == results[block_mbs[0]] for block_mb in block_mbs)
    info = {"gallery_mib": images.nbytes / 2**20, "build_seconds": build_seconds, "same_results": same,
            "gender_max_skew": results[block_mbs[0]]["attributes"]["gender"]["by_desired"]["equal_opportunity"]["1000"][
                "max_skew"]["mean"]}
    return rows, info


def _table(header: list[str], rows: list[tuple]) -> str:
    def cell(value):
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gallery", type=int, default=1_000_000, help="synthetic gallery size")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--block_mb", type=int, nargs="+", default=[64, 256], help="score-block bounds to compare")
    parser.add_argument("--tiny_images", type=int, default=1024)
    parser.add_argument("--vit_images", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--threads", type=int, nargs="+", default=[0],
                        help="torch intra-op threads to time the embedding with (0: torch's default)")
    parser.add_argument("--num_workers", type=int, default=0, help="image-decoding threads of the engine")
    parser.add_argument("--skip_embedding", action="store_true")
    parser.add_argument("--skip_fairness", action="store_true")
    args = parser.parse_args(argv)
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}; python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        if not args.skip_embedding:
            import torch

            default_threads = torch.get_num_threads()
            for threads in args.threads:
                torch.set_num_threads(threads or default_threads)
                rows = benchmark_embedding(folder, args.tiny_images, args.vit_images, args.batch_size, args.num_workers)
                print(f"\nEmbedding throughput on CPU, {torch.get_num_threads()} torch thread(s), {args.num_workers} "
                      f"decoding workers (JPEG 256 px from disk -> unit-norm embedding, batch {args.batch_size}); "
                      f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
                print(_table(["model", "parameters", "images", "dim", "seconds", "images/s"], rows))
            torch.set_num_threads(default_threads)
        if not args.skip_fairness:
            rows, info = benchmark_fairness(folder, args.gallery, args.dim, args.block_mb)
            print(f"\nFairness (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores) over {args.gallery:,} x {args.dim} stored float16 embeddings "
                  f"({info['gallery_mib']:.0f} MiB memory-mapped; written in {info['build_seconds']:.1f} s), "
                  "3 attributes (2/7/9 values), k = 1000, 2 desired distributions\n")
            print(_table(["score block bound (MiB)", "queries", "seconds", "ms/query", "peak extra anon MiB",
                          "numpy traced peak MiB"], rows))
            print(f"\nresults identical across block bounds: {info['same_results']}; "
                  f"gender MaxSkew@1000 (random embeddings) = {info['gender_max_skew']:.4f}")


if __name__ == "__main__":
    main()
