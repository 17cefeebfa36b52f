"""BendVLM's per-query latency beside a plain query, on CPU.

    python benchmarks/bendvlm_latency.py                      # 100,000-image gallery, FairFace-train-sized reference
    python benchmarks/bendvlm_latency.py --gallery 100000 --reference 86744 --queries 20 --threads 1

One query of text-to-image retrieval: embed the prompt with the text tower, score every gallery
embedding, select the top k. A plain query embeds one sequence. A BendVLM query (`BendVLMCLIPModel.
get_text_features`) embeds the prompt and its V × T attribute-augmented versions in one batch, removes
the local attribute subspace, finds each value's nearest reference images (a similarity against the
whole stored reference set) and equalizes the similarity to their means; then it scores the same
gallery. The text tower has ViT-B/32 CLIP's shape (12 layers × 512, projection 512; random weights,
same cost); the gallery (default 100,000) and the reference set (default 86,744, FairFace train's size)
are random unit-norm 512-d embeddings; gender is 2 values, race 7. Reported: the median and worst
wall time per query over the prompts (each prompt once, after one warm-up query), the median CPU time
of this process (the work, less sensitive to other processes on a shared machine), and their ratios to
the plain query, side by side in one run.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np

PROFESSIONS = ("doctor", "nurse", "chef", "firefighter", "pilot", "teacher", "farmer", "lawyer", "engineer",
               "cashier", "mechanic", "judge", "baker", "dentist", "plumber", "scientist", "janitor", "singer")
TEMPLATES = ("a photo of a {}", "a portrait of a {}")
# FairFace train's size: the reference set BendVLM's authors use.
FAIRFACE_TRAIN_SIZE = 86744
TOP_K = 1000


def _prompts(count: int) -> list[str]:
    prompts = [template.format(name) for template in TEMPLATES for name in PROFESSIONS]
    if count + 1 > len(prompts):
        raise SystemExit(f"--queries: at most {len(prompts) - 1} distinct prompts")
    return prompts[:count + 1]


def _clip(prompts: list[str]):
    """A randomly initialized CLIP whose text tower has ViT-B/32's shape, and its processor."""
    from cf_hf.utils.tiny_clip import TinyCLIPSpec, build_tiny_clip

    spec = TinyCLIPSpec(image_size=32, patch_size=16, vision_width=64, vision_layers=1, vision_heads=2,
                        text_width=512, text_layers=12, text_heads=8, projection_dim=512)
    words = " ".join(prompts + ["who is female male White Black Latino East Southeast Asian Indian Middle Eastern"])
    return build_tiny_clip([words] * 4, spec=spec)


def _bendvlm(clip, processor, attribute: str, reference: np.ndarray, generator):
    from cf_hf.methods.attribute_prompts import load_attribute_prompts
    from cf_hf.methods.bendvlm.fit import BendVLMFit, bendvlm_model
    from cf_hf.methods.bendvlm.modeling import DEFAULT_NEIGHBORS

    prompts = load_attribute_prompts(attribute)
    labels = generator.integers(len(prompts.values), size=len(reference))
    attribute_prompts = generator.normal(size=(len(prompts.values), reference.shape[1]))
    attribute_prompts /= np.linalg.norm(attribute_prompts, axis=1, keepdims=True)
    fit = BendVLMFit(prompts, reference, labels, attribute_prompts, DEFAULT_NEIGHBORS)
    return bendvlm_model(clip, processor.tokenizer, fit), len(prompts.values) * len(prompts.query_templates)


def _latencies(model, tokenizer, prompts: list[str], gallery) -> tuple[list[float], list[float]]:
    """(wall seconds, CPU seconds of this process) per query, the warm-up query left out."""
    import torch

    wall, cpu = [], []
    with torch.inference_mode():
        for prompt in prompts:
            start, start_cpu = time.perf_counter(), time.process_time()
            tokens = tokenizer([prompt], padding=True, return_tensors="pt")
            query = model.get_text_features(**tokens).pooler_output
            query = torch.nn.functional.normalize(query.float(), dim=-1)
            scores = gallery @ query[0]
            scores.topk(TOP_K)
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return wall[1:], cpu[1:]


def main(argv=None) -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, default=100_000, help="gallery images (random unit-norm 512-d embeddings)")
    parser.add_argument("--reference", type=int, default=FAIRFACE_TRAIN_SIZE, help="BendVLM's reference images")
    parser.add_argument("--queries", type=int, default=20, help="timed prompts (plus one warm-up)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    generator = np.random.default_rng(0)

    def unit_rows(count):
        rows = generator.normal(size=(count, 512)).astype(np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    gallery = torch.from_numpy(unit_rows(args.gallery))
    reference = unit_rows(args.reference)
    prompts = _prompts(args.queries)
    clip, processor = _clip(prompts)
    clip.eval()
    rows = [("plain CLIP", _latencies(clip, processor.tokenizer, prompts, gallery), 0)]
    for attribute in ("gender", "race"):
        model, extra = _bendvlm(clip, processor, attribute, reference, generator)
        rows.append((f"BendVLM ({attribute}, {extra} augmented)", _latencies(model, processor.tokenizer, prompts, gallery),
                     extra))
    base_wall, base_cpu = (statistics.median(times) for times in rows[0][1])
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s); gallery "
          f"{args.gallery:,} x 512, reference {args.reference:,} x 512, top-{TOP_K}, {args.queries} queries")
    print("| query | extra text sequences | median wall (ms) | worst wall (ms) | median CPU (ms) | ratio to plain "
          "(wall) | ratio to plain (CPU) |")
    print("|---|---|---|---|---|---|---|")
    for name, (wall, cpu), extra in rows:
        median_wall, median_cpu = statistics.median(wall), statistics.median(cpu)
        print(f"| {name} | {extra} | {1000 * median_wall:.1f} | {1000 * max(wall):.1f} | {1000 * median_cpu:.1f} | "
              f"{median_wall / base_wall:.2f}x | {median_cpu / base_cpu:.2f}x |")


if __name__ == "__main__":
    main()
