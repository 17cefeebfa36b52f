"""The demo's plots: the α sweep (fairness and downstream against α) and the models side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cf_hf.evaluation.results import ORIGINAL
from cf_hf.interpolation import alpha_key

from ..corpus import ATTRIBUTES


def write_plots(results: dict, plot_dir: Path) -> list[Path]:
    """The α sweep (fairness and downstream vs α) and the ablation bars, as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot_dir.mkdir(parents=True, exist_ok=True)
    alphas = sorted(entry["alpha"] for entry in results["models"].values() if "alpha" in entry)
    keys = [alpha_key(alpha) for alpha in alphas]
    paths = []
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for axis, metric in zip(axes[:2], ("max_skew", "ndkl")):
        for name in ATTRIBUTES:
            means = [results["models"][key][name][metric] for key in keys]
            stds = [results["std"][key][name][metric] for key in keys]
            line = axis.errorbar(alphas, means, yerr=stds, marker="o", capsize=3, label=name)
            floor = results["random_floor"].get(name, {}).get(metric)
            if floor is not None:
                axis.axhline(floor, linestyle=":", color=line[0].get_color())
        axis.set_xlabel("α")
        axis.set_title(f"{'MaxSkew' if metric == 'max_skew' else 'NDKL'}@k (dotted: random floor)")
        axis.legend()
    for metric, label in (("zero_shot_accuracy", "zero-shot accuracy"), ("recall_at_5", "R@5")):
        means = [100 * results["models"][key][metric] for key in keys]
        stds = [100 * results["std"][key][metric] for key in keys]
        axes[2].errorbar(alphas, means, yerr=stds, marker="o", capsize=3, label=label)
    axes[2].set_xlabel("α")
    axes[2].set_title("downstream (%)")
    axes[2].legend()
    figure.tight_layout()
    path = plot_dir / "alpha_sweep.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    paths.append(path)

    names = [ORIGINAL, alpha_key(results["chosen_alpha"])] + list(results["ablations"])
    entries = [results["models"][name] for name in names]
    figure, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    width = 0.8 / len(names)
    for axis, metric in zip(axes, ("max_skew", "ndkl")):
        for index, (name, entry) in enumerate(zip(names, entries)):
            positions = np.arange(len(ATTRIBUTES)) + index * width
            axis.bar(positions, [entry[attribute][metric] for attribute in ATTRIBUTES], width, label=name)
        axis.set_xticks(np.arange(len(ATTRIBUTES)) + width * (len(names) - 1) / 2, ATTRIBUTES)
        axis.set_title("MaxSkew@k" if metric == "max_skew" else "NDKL@k")
        axis.legend(fontsize=8)
    figure.tight_layout()
    path = plot_dir / "models.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    paths.append(path)
    frontier = write_frontier(results, plot_dir)
    return paths + ([frontier] if frontier else [])


def write_frontier(results: dict, plot_dir: Path) -> Path | None:
    """`cf-hf compare`'s fairness–accuracy frontier (`cf_hf.methods.compare.plot_frontier`) of the demo's
    models (means over seeds): the CF_α sweep and each compared method's sweep a curve; None without
    compared methods."""
    from cf_hf.methods.compare import FRONTIER_PLOT, plot_frontier

    if not results.get("method_selection") or "protocol" not in results:
        return None
    records = {key: {"method": "counterfactual", "settings": {"alpha": entry["alpha"]}, "swept": "alpha"}
               for key, entry in results["models"].items() if "alpha" in entry}
    records.update(results.get("methods", {}))
    path = plot_dir / FRONTIER_PLOT
    return path if plot_frontier({**results, "methods": records}, path) else None
