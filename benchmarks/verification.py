"""Verification measured on a planted run of the professions world: speed, precision and recall of
the rejected rows against the planted failures, the card's pass rates against the planted rates,
and (with --finetune) fine-tuning on the unverified vs the verified data.

    python benchmarks/verification.py                 # the demo's dataset size, failures planted
    python benchmarks/verification.py --finetune      # + the verified-vs-unverified fine-tuning table

The world's inpainter plants failures (`PLANTED`): it keeps the original person for some requests
and paints the wrong skin tone for others, at rates that depend on the requested cell. Generation
runs with the demo's settings (seed 0); the run is exported twice, without and with verification
(the world's segmenter, attribute reader and pixel embeddings), and each is timed. The zero-shot
CLIP path (`CLIPAttributeClassifier`, here the world's tiny original CLIP) is timed on the first
`--clip_rows` rows. Prints tables.
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections import defaultdict
from pathlib import Path

# The planted failure model: a copy (the person kept) for every cell at 5%, more often for elderly
# people; the wrong skin tone for dark and medium-dark requests. The first rule that fires decides.
PLANTED = (
    ("copy", 0.05, {}),
    ("copy", 0.15, {"age": "elderly"}),
    ("wrong_skin_tone", 0.30, {"skin_tone": "dark"}),
    ("wrong_skin_tone", 0.15, {"skin_tone": "medium_dark"}),
)


def _failures():
    from cf_hf.world.components import FailureRule, InpaintingFailures

    return InpaintingFailures(tuple(FailureRule(mode, rate, when) for mode, rate, when in PLANTED))


def _expected_pass_rate(failures, attribute: str, value: str, cells: list[dict]) -> float:
    """The planted pass rate of `value`: the mean over its grid cells (balanced in the run) of the
    probability that no rule fires."""
    rates = []
    for cell in cells:
        if cell[attribute] != value:
            continue
        survive = 1.0
        for rule in failures.rules:
            if rule.applies(cell):
                survive *= 1.0 - rule.rate
        rates.append(survive)
    return sum(rates) / len(rates)


def _values(grid, name: str) -> tuple[str, ...]:
    return next(attribute.values for attribute in grid.attributes if attribute.name == name)


def _timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default="outputs/verification_benchmark")
    parser.add_argument("--finetune", action="store_true", help="Also fine-tune on unverified vs verified data.")
    parser.add_argument("--clip_rows", type=int, default=1024, help="Rows on which the zero-shot CLIP path is timed.")
    parser.add_argument("--smoke", action="store_true", help="A small run (2 bases per concept, 5 fine-tuning steps) to check the script.")
    args = parser.parse_args()

    import datasets

    from cf_hf.cli.verify import clip_attribute_classifier
    from cf_hf.concepts import load_attribute_grid
    from cf_hf.generation import generate
    from cf_hf.generation.verification import VerificationConfig, Verifier
    from cf_hf.utils.logging import silence_progress_bars
    from cf_hf.world.components import (
        WorldCaptionWriter,
        WorldInpainter,
        WorldSegmenter,
        WorldTextToImage,
    )
    from cf_hf.world.demo.config import DemoConfig
    from cf_hf.world.demo.stages import WORLD_DIR, generation_config
    from cf_hf.world.verification import STAND_IN_ATTRIBUTES, world_verifier
    from dataset_builder import export_dataset

    silence_progress_bars()
    out = Path(args.output_dir)
    shutil.rmtree(out, ignore_errors=True)
    config = DemoConfig.full()
    if args.smoke:
        from dataclasses import replace

        config = replace(config, captions_per_concept=1, decorators_per_caption=2, finetune_steps=5)
    failures = _failures()
    grid = load_attribute_grid(WORLD_DIR / "attribute_grid.yaml")
    report, generation_seconds = _timed(lambda: generate(
        generation_config(config, seed=0), caption_writer=WorldCaptionWriter(),
        text_to_image=WorldTextToImage(image_size=config.corpus.image_size), segmenter=WorldSegmenter(),
        inpainter=WorldInpainter(failures), output_dir=out / "run", show_progress=False,
    ))  # fmt: skip
    _, export_seconds = _timed(lambda: export_dataset(out / "run", out / "unverified", test_size=0.0))
    # What `cf-hf verify --world` runs: the world's original CLIP reads the attributes it knows the words
    # for, the pixel stand-in the others (`cf_hf.world.verification.STAND_IN_ATTRIBUTES`).
    verifier = world_verifier(grid, VerificationConfig())
    _, verified_export_seconds = _timed(lambda: export_dataset(out / "run", out / "verified", test_size=0.0, verifier=verifier))
    verify_seconds = verifier.reports["train"].seconds

    verified = datasets.load_dataset(str(out / "verified"))
    planted_total = detected = rejected_total = 0
    per_value = defaultdict(lambda: [0, 0, 0])  # planted survivors, card passes, rows
    for split in verified:
        rows = verified[split].select_columns(["is_base", "seed", *grid.names])
        features = rows.features
        for row in rows:
            if row["is_base"]:
                continue
            appearance = {name: features[name].int2str(row[name]) for name in grid.names}
            planted = failures.planted(appearance, row["seed"]) is not None
            rejected = split == "rejected"
            planted_total += planted
            rejected_total += rejected
            detected += planted and rejected
            for name in grid.names:
                entry = per_value[(name, appearance[name])]
                entry[0] += not planted
                entry[1] += not rejected
                entry[2] += 1
    precision = detected / rejected_total if rejected_total else float("nan")
    recall = detected / planted_total if planted_total else float("nan")

    counterfactuals = report.counterfactuals
    print(f"\nplanted run: {report.base_images} base images, {counterfactuals} counterfactuals "
          f"(DemoConfig.full(), seed 0); planted failures {planted_total}, rejected {rejected_total}")  # fmt: skip
    print(f"\n{'stage':<40}{'seconds':>10}{'rows/s':>10}")
    print(f"{'generation (world components)':<40}{generation_seconds:>10.1f}{counterfactuals / generation_seconds:>10.1f}")
    print(f"{'export, unverified':<40}{export_seconds:>10.1f}")
    print(f"{'export with verification':<40}{verified_export_seconds:>10.1f}")
    print(f"adherence: the world's CLIP, with the pixel stand-in for {', '.join(STAND_IN_ATTRIBUTES)}")
    print(f"{'  of which verification (world verifier)':<40}{verify_seconds:>10.1f}{counterfactuals / verify_seconds:>10.1f}")
    print(f"verification overhead relative to generation: {100 * verify_seconds / generation_seconds:.0f}%")

    unverified = datasets.load_dataset(str(out / "unverified"), split="train")
    clip_rows = unverified.select(range(min(args.clip_rows, len(unverified))))
    clip = clip_attribute_classifier(grid, WORLD_DIR / "original_clip", batch_size=64)
    clip_verifier = Verifier(grid, clip, None, WorldSegmenter(), VerificationConfig(), show_progress=False)
    clip_verified, clip_summary = clip_verifier({"train": clip_rows})
    clip_report = clip_verifier.reports["train"]
    print(f"{'verification, zero-shot CLIP (world original)':<40}{clip_report.seconds:>10.1f}{clip_report.rows_per_second:>10.1f}"
          f"   ({clip_report.rows} rows)")  # fmt: skip
    correct = [row for split in clip_verified.values() for row in split.select_columns(["is_base", "seed", *grid.names, "verify_failures"])
               if not row["is_base"] and failures.planted({n: clip_rows.features[n].int2str(row[n]) for n in grid.names}, row["seed"]) is None]  # fmt: skip
    adherent = sum(not any(f.startswith("adherence") for f in row["verify_failures"].split(",") if f) for row in correct)
    print(f"zero-shot CLIP of the world: {adherent}/{len(correct)} correct (unplanted) edits pass every adherence check")

    print(f"\nrejected rows against planted failures: precision {100 * precision:.1f}%, recall {100 * recall:.1f}%")
    print(f"\n{'attribute':<10}{'value':<14}{'planted rate':>14}{'planted (drawn)':>17}{'card':>8}{'card - drawn':>14}")
    cells = grid.cells()
    for name, value in [(attribute, value) for attribute in grid.names for value in _values(grid, attribute)]:
        survivors, passes, total = per_value[(name, value)]
        expected = _expected_pass_rate(failures, name, value, cells)
        print(f"{name:<10}{value:<14}{100 * expected:>13.1f}%{100 * survivors / total:>16.1f}%{100 * passes / total:>7.1f}%"
              f"{100 * (passes - survivors) / total:>+13.1f}")  # fmt: skip

    if args.finetune:
        _finetune_table(config, out, unverified, datasets.load_dataset(str(out / "verified"), split="train"))


def _finetune_table(config, out: Path, unverified, verified) -> None:
    """Fine-tune the shipped original on each (same steps and seed) and evaluate on the test galleries."""
    from cf_hf.evaluation import evaluate_models
    from cf_hf.world import corpus as corpus_module
    from cf_hf.world.demo.stages import (
        copy_shipped_original,
        evaluation_config,
        find_shipped_original,
        fine_tune,
        world_sets,
    )
    from cf_hf.world.demo.statistics import headline

    shipped, why = find_shipped_original(config, corpus_module.make_corpus(config.corpus))
    if shipped is None:
        raise SystemExit(f"the shipped original does not match the demo's settings: {why}")
    original = copy_shipped_original(Path(shipped), out / "original")
    verified = verified.remove_columns([c for c in verified.column_names if c.startswith("verify_")])
    models = {"original": original}
    for name, dataset in (("unverified", unverified), ("verified", verified)):
        (models[name], seconds) = _timed(lambda d=dataset, n=name: fine_tune(config, original, d, out / n, seed=0, quiet=True))
        print(f"fine-tuned on {name} ({len(dataset)} rows, {config.finetune_steps} steps) in {seconds:.0f} s")
    fairface, flickr, imagenet = world_sets(config)
    results = evaluate_models(models, fairness=fairface, retrieval=flickr, zero_shot=imagenet,
                              config=evaluation_config(config, quiet=True))  # fmt: skip
    numbers = {name: headline(entry) for name, entry in results["models"].items()}
    attributes = ("gender", "skin_tone", "age")
    header = "".join(f"{a + ' MaxSkew':>18}{a + ' NDKL':>16}" for a in attributes)
    print(f"\n{'model':<12}{header}{'zero-shot':>11}{'R@5':>7}")
    for name, entry in numbers.items():
        cells = "".join(f"{entry[a]['max_skew']:>18.3f}{entry[a]['ndkl']:>16.3f}" for a in attributes)
        print(f"{name:<12}{cells}{100 * entry['zero_shot_accuracy']:>10.1f}%{100 * entry['recall_at_5']:>6.1f}%")


if __name__ == "__main__":
    main()
