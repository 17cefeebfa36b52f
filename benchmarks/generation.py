"""Generation throughput: images/s per stage and end to end, and what the orchestration costs.

    python benchmarks/generation.py                      # tiny random models, CPU (what CI-sized machines run)
    python benchmarks/generation.py --models default --device cuda --dtype float16 --image_size 512

The same work (same plan: prompts, seeds, masks, grid cells, batch sizes) is done twice after a
warm-up call to every component: once by calling the components directly in a loop, once through
`generate()` (planning, PNG encoding, parquet shards, checksums, receipts, manifest). Each is
repeated and the best time kept (the machine may be shared). Prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _components(args, root: Path | None) -> dict:
    from cf_hf.cli.generate import GenerateArguments, build_components

    if root is None:  # the real default models
        options = GenerateArguments(output_dir="unused", template_captions=True, device=args.device, dtype=args.dtype,
                                    image_size=args.image_size, fast_inpainting=args.fast_inpainting)  # fmt: skip
        return build_components(options)
    from _generation_tiny import tiny_components

    return tiny_components(root)


def _config(args):
    from _generation_tiny import tiny_config

    from cf_hf.concepts import load_concepts

    concepts = load_concepts(names=["doctor", "nurse", "chef", "firefighter"])
    captions = max(1, args.bases // (len(concepts) * 2))
    return tiny_config(concepts=concepts, captions_per_concept=captions, decorators_per_caption=2,
                       appearances_per_base=args.appearances, shard_size=args.shard_size,
                       text_to_image_batch_size=args.batch_size, segmentation_batch_size=args.batch_size,
                       inpainting_batch_size=args.batch_size)  # fmt: skip


def _batches(items, size):
    return [items[start : start + size] for start in range(0, len(items), size)]


def direct_loop(config, components) -> dict[str, float]:
    """The same work as `generate`, by hand: seconds per stage (no files written)."""
    from cf_hf.generation import InpaintRequest, plan_bases
    from cf_hf.generation.runtime import derive_seed

    seconds = dict.fromkeys(("base_images", "masks", "counterfactuals"), 0.0)
    captions = {c.name: components["caption_writer"](c, config.captions_per_concept, derive_seed(config.seed, "captions", c.name))
                for c in config.concepts}  # fmt: skip
    plan = plan_bases(config, captions)
    for shard in _batches(plan, config.shard_size):
        start = time.perf_counter()
        images = [image for batch in _batches([b.request for b in shard], config.text_to_image_batch_size)
                  for image in components["text_to_image"](batch)]  # fmt: skip
        seconds["base_images"] += time.perf_counter() - start
        start = time.perf_counter()
        masks = [mask for batch in _batches(images, config.segmentation_batch_size) for mask in components["segmenter"](batch)]
        masks = [config.mask_postprocessing(mask) for mask in masks]
        seconds["masks"] += time.perf_counter() - start
        requests = [
            InpaintRequest(image, mask.mask, appearance, config.attribute_grid.appearance_prompt(appearance, base.concept.name),
                           base.request.caption, base.concept.name, seed)
            for base, image, mask in zip(shard, images, masks) if mask.rejection is None
            for appearance, seed in zip(base.appearances, base.appearance_seeds)
        ]  # fmt: skip
        start = time.perf_counter()
        for batch in _batches(requests, config.inpainting_batch_size):
            components["inpainter"](batch)
        seconds["counterfactuals"] += time.perf_counter() - start
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", choices=["tiny", "default"], default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--image_size", type=int, default=512, help="for --models default")
    parser.add_argument("--fast_inpainting", action="store_true", help="for --models default")
    parser.add_argument("--bases", type=int, default=16, help="base images (rounded to the plan)")
    parser.add_argument("--appearances", type=int, default=2, help="counterfactuals per base image")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--shard_size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from cf_hf.generation import generate

    root = None
    if args.models == "tiny":
        from _generation_tiny import tiny_components_dir

        root = tiny_components_dir()
    config = _config(args)
    components = _components(args, root)
    direct_loop(config, components)  # warm-up: loads every model, first-call allocations

    direct_runs, orchestrated_runs, reports = [], [], []
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            start = time.perf_counter()
            stages = direct_loop(config, components)
            direct_runs.append((time.perf_counter() - start, stages))
            start = time.perf_counter()
            reports.append(generate(config, **components, output_dir=Path(scratch) / f"run{repeat}", show_progress=False))
            orchestrated_runs.append(time.perf_counter() - start)

    report = reports[0]
    bases, counterfactuals = report.base_images + sum(report.rejected.values()), report.counterfactuals
    best_direct, best_stages = min(direct_runs, key=lambda run: run[0])
    best_orchestrated = min(orchestrated_runs)
    rows = report.base_images + report.counterfactuals
    import torch

    print(f"models: {args.models}  device: {args.device}  dtype: {args.dtype}  threads: {torch.get_num_threads()}  base images: {bases}  "
          f"counterfactuals: {counterfactuals}  rows: {rows}  batch: {args.batch_size}  best of {args.repeats}")  # fmt: skip
    print(f"\n{'stage':<34}{'images':>8}{'seconds':>10}{'images/s':>10}")
    for stage, count in (("base_images", bases), ("masks", bases), ("counterfactuals", counterfactuals)):
        print(f"{stage:<34}{count:>8}{best_stages[stage]:>10.3f}{count / best_stages[stage]:>10.1f}")
    for label, seconds in (("end to end, direct loop", best_direct), ("end to end, generate()", best_orchestrated)):
        print(f"{label:<34}{rows:>8}{seconds:>10.3f}{rows / seconds:>10.1f}")
    overhead = best_orchestrated / best_direct - 1
    spread = statistics.pstdev([run[0] for run in direct_runs]) / best_direct
    # Inside generate(): its wall time minus the time spent in the component calls. Unlike the
    # difference of two wall times, this does not move with the components' run-to-run noise.
    inside = []
    for seconds, run_report in zip(orchestrated_runs, reports):
        in_components = sum(run_report.stage_seconds[stage] for stage in ("captions", "base_images", "masks", "counterfactuals"))
        inside.append((seconds - in_components) / in_components)
    print(f"\norchestration overhead, wall clock vs direct loop: {overhead:+.1%} "
          f"(run-to-run spread of the direct loop: {spread:.1%})")
    print(f"orchestration overhead, time in generate() outside component calls: {min(inside):.1%} best, "
          f"{statistics.median(inside):.1%} median (goal ≤ 10%)")  # fmt: skip
    print(f"  of which writing (parquet + receipts): {report.stage_seconds['writing']:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
