"""`cf-hf metrics-demo`: the fairness metrics on a small ranking, with and without bias."""

from __future__ import annotations

import argparse

import numpy as np

from cf_hf.cli.command import Command
from cf_hf.metrics import fairness_summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cf-hf metrics-demo", description=__doc__)
    parser.add_argument("--n_images", type=int, default=2000, help="gallery size (balanced, two values)")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    return parser


class MetricsDemoCommand(Command):
    """`cf-hf metrics-demo`: MaxSkew, MinSkew and NDKL of a random and a biased ranking."""

    name = "metrics-demo"

    def build_parser(self) -> argparse.ArgumentParser:
        return build_parser()

    def run(self, args) -> int:
        rng = np.random.default_rng(args.seed)
        labels = np.arange(args.n_images) % 2
        random_scores = rng.random((1, args.n_images))
        # A biased model: value 0 scores higher on average.
        biased_scores = random_scores + 0.5 * (labels == 0)
        print(f"Balanced gallery of {args.n_images} images, two attribute values, k={args.k}")
        print(f"{'ranking':<10} {'MaxSkew':>8} {'MinSkew':>8} {'NDKL':>8}")
        for name, scores in [("random", random_scores), ("biased", biased_scores)]:
            metrics = fairness_summary(scores, {"attribute": labels}, [args.k])["attribute"][args.k]
            print(
                f"{name:<10} {metrics['max_skew']['mean']:>8.4f} {metrics['min_skew']['mean']:>8.4f} "
                f"{metrics['ndkl']['mean']:>8.4f}"
            )
        return 0
