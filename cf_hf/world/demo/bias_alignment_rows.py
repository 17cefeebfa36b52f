"""The bias-alignment rows of the demo's comparison, measured on their own: the same shipped original,
the same reported (test) galleries and the same per-seed counterfactual datasets as `cf-hf demo`,
without re-running the fine-tuning, the α sweep and the other methods.

    python -m cf_hf.world.demo.bias_alignment_rows --seeds 3 --output_dir outputs/ba-rows

Per seed: the run's counterfactual dataset (`stages.make_counterfactual_dataset`), the four
bias-alignment models (`stages.fit_bias_alignment`: the paper's, with image counterfactuals, L_ba only,
L_cd only) and their evaluation; then one table of means ± std over seeds beside the original's
numbers (`cf-hf demo --bias_alignment` puts the same rows into the full comparison).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from cf_hf.evaluation.results import ORIGINAL

from ..corpus import ATTRIBUTES
from .config import BIAS_ALIGNMENT_VARIANTS, DemoConfig
from .report import comparison_header, markdown_table
from .selection import fairness_score
from .statistics import headline, mean_and_std, reductions


def measure(config: DemoConfig, output_dir: Path, quiet: bool = True) -> dict:
    """{"original": numbers, "per_seed": [{name: numbers}], "fit_seconds": {name: [s]}} on the test sets."""
    import datasets as hf_datasets

    from cf_hf.evaluation import evaluate_models
    from cf_hf.world.original import ORIGINAL_DIR

    from .stages import (
        evaluation_config,
        fit_bias_alignment,
        make_counterfactual_dataset,
        method_fit_gallery,
        world_sets,
    )

    fairface, flickr, imagenet = world_sets(config)
    evaluation = evaluation_config(config, quiet)
    gallery = method_fit_gallery(config)
    original = evaluate_models({ORIGINAL: ORIGINAL_DIR}, fairness=fairface, retrieval=flickr, zero_shot=imagenet,
                               config=evaluation)
    measured = {"original": headline(original["models"][ORIGINAL]), "per_seed": [], "fit_seconds": {}}
    for seed in range(config.seeds):
        seed_dir = output_dir / f"seed-{seed}"
        started = time.perf_counter()
        make_counterfactual_dataset(config, seed, seed_dir / "generation", seed_dir / "dataset", quiet)
        dataset = hf_datasets.load_dataset(str(seed_dir / "dataset"), split="train", cache_dir=str(seed_dir / "hf_cache"))
        print(f"seed {seed}: counterfactual dataset ({len(dataset)} rows) in {time.perf_counter() - started:.0f} s",
              flush=True)
        fitted = fit_bias_alignment(config, ORIGINAL_DIR, gallery, seed_dir / "methods", seed, evaluation, dataset, quiet)
        for checkpoint in fitted:
            measured["fit_seconds"].setdefault(checkpoint.name, []).append(checkpoint.fit_seconds)
        results = evaluate_models({checkpoint.name: checkpoint.path for checkpoint in fitted}, fairness=fairface,
                                  retrieval=flickr, zero_shot=imagenet, config=evaluation)
        measured["per_seed"].append({name: headline(entry) for name, entry in results["models"].items()})
        print(f"seed {seed}: done at {time.perf_counter() - started:.0f} s", flush=True)
    return measured


def table(measured: dict) -> str:
    """The demo's comparison columns: the original, then each model's mean ± std over seeds."""
    def cell(mean, std, scale=1.0, digits=3):
        return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"

    original = measured["original"]
    rows = [[ORIGINAL] + [f"{original[name][metric]:.3f}" for name in ATTRIBUTES for metric in ("max_skew", "ndkl")]
            + [f"{100 * original[key]:.1f}" for key in ("zero_shot_accuracy", "recall_at_5")] + ["", ""]]
    for name in measured["per_seed"][0]:
        runs = [run[name] for run in measured["per_seed"]]
        mean, std = mean_and_std(runs)
        cut, _ = mean_and_std([{"cut": fairness_score(reductions(original, run))} for run in runs])
        fits = measured["fit_seconds"][name]
        rows.append([name] + [cell(mean[a][m], std[a][m]) for a in ATTRIBUTES for m in ("max_skew", "ndkl")]
                    + [cell(mean[k], std[k], 100, 1) for k in ("zero_shot_accuracy", "recall_at_5")]
                    + [f"{100 * cut['cut']:.0f}%", f"{sum(fits) / len(fits):.1f}"])
    return markdown_table(comparison_header(), rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cf_hf.world.demo.bias_alignment_rows", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--output_dir", default="outputs/bias-alignment-rows")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads; unset: torch's choice")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    # The four rows: the paper's model, with image counterfactuals, L_ba only, L_cd only.
    config = replace(DemoConfig.full(), bias_alignment_variants=BIAS_ALIGNMENT_VARIANTS)
    config.seeds, config.bias_alignment = args.seeds, True
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    measured = measure(config, output_dir)
    (output_dir / "bias_alignment_rows.json").write_text(json.dumps(measured, indent=1), encoding="utf-8")
    print(table(measured))
    return 0


if __name__ == "__main__":
    sys.exit(main())
