"""The demo's numbers: the headline numbers of one evaluated model, means and standard deviations
over seeds, and reductions against the original."""

from __future__ import annotations

import numpy as np

from cf_hf.evaluation.results import FAIRNESS_METRICS

from ..corpus import ATTRIBUTES


def headline(entry: dict) -> dict:
    """The flat numbers of one model entry of `evaluate_models`: per attribute MaxSkew, MinSkew and
    NDKL (means over queries), zero-shot accuracy, R@5, and the zero-shot accuracy split by
    stereotype and by prop visibility."""
    numbers = {
        name: {metric: float(entry[name][metric]) for metric in FAIRNESS_METRICS} for name in ATTRIBUTES
    }
    numbers["zero_shot_accuracy"] = float(entry["zero_shot_accuracy"])
    numbers["recall_at_5"] = float(entry["recall_at_5"])
    groups = next(iter(entry["zero_shot"].values())).get("groups", {})
    numbers["zero_shot_groups"] = {
        f"{attribute}={value}": float(accuracy)
        for attribute, by_value in groups.items()
        for value, accuracy in by_value["per_value"].items()
    }
    return numbers


def _flatten(numbers: dict, prefix: str = "") -> dict[str, float]:
    flat = {}
    for key, value in numbers.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        else:
            flat[prefix + key] = float(value)
    return flat


def _unflatten(flat: dict[str, float]) -> dict:
    nested: dict = {}
    for key, value in flat.items():
        *parents, leaf = key.split("/")
        node = nested
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return nested


def mean_and_std(runs: list[dict]) -> tuple[dict, dict]:
    """Mean and (sample, ddof=1; 0 for one run) standard deviation of nested numbers over runs."""
    flats = [_flatten(run) for run in runs]
    keys = flats[0].keys()
    means = {key: float(np.mean([flat[key] for flat in flats])) for key in keys}
    stds = {
        key: float(np.std([flat[key] for flat in flats], ddof=1)) if len(flats) > 1 else 0.0 for key in keys
    }
    return _unflatten(means), _unflatten(stds)


def reductions(original: dict, model: dict) -> dict:
    """Relative reduction (fraction; positive = fairer) of MaxSkew, |MinSkew| and NDKL per attribute,
    and the change of the downstream numbers in points of fraction (model - original)."""
    result = {}
    for name in ATTRIBUTES:
        result[name] = {}
        for metric in FAIRNESS_METRICS:
            before, after = abs(original[name][metric]), abs(model[name][metric])
            result[name][metric] = (before - after) / before if before > 0 else 0.0
    result["zero_shot_accuracy_change"] = model["zero_shot_accuracy"] - original["zero_shot_accuracy"]
    result["recall_at_5_change"] = model["recall_at_5"] - original["recall_at_5"]
    return result
