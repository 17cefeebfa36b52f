"""Choosing one setting of a sweep: the fairest candidate whose downstream numbers stay within a
tolerance of the original's.

The rule is written once for any swept setting (here the WiSE-FT α): `choose_best` takes the
candidates' numbers by name. The numbers it chooses on are the validation galleries' when the run
has them (`selection_numbers`), so that the reported (test) numbers never choose.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from typing import TypeVar

import numpy as np

from cf_hf.interpolation import alpha_key

from ..corpus import ATTRIBUTES
from .statistics import mean_and_std, reductions

# The fairness metrics whose mean reduction ranks the candidates.
RANKED_METRICS = ("max_skew", "ndkl")
# Scores closer than this tie; the earlier candidate wins.
TIE = 1e-12

Key = TypeVar("Key", bound=Hashable)


def selection_rule(tolerance: float) -> str:
    """The rule of `choose_best`, in words (results.json records it)."""
    return (
        "largest mean reduction of MaxSkew and NDKL over attributes with zero-shot accuracy and R@5 "
        f"each within {tolerance:g} of the original (means over seeds)"
    )


def fairness_score(change: dict) -> float:
    """Mean reduction of MaxSkew and NDKL over the attributes (`reductions` output)."""
    return float(np.mean([change[name][metric] for name in ATTRIBUTES for metric in RANKED_METRICS]))


def keeps_downstream(change: dict, tolerance: float) -> bool:
    """Whether zero-shot accuracy and R@5 each fell by at most `tolerance` (`reductions` output)."""
    return change["zero_shot_accuracy_change"] >= -tolerance and change["recall_at_5_change"] >= -tolerance


def choose_best(candidates: Mapping[Key, dict], original: dict, tolerance: float, fallback: Key) -> Key:
    """The key of the candidate (numbers as `statistics.headline`) with the largest `fairness_score`
    among those that `keeps_downstream`; `fallback` when none does."""
    best, best_score = fallback, -math.inf
    for key, numbers in candidates.items():
        change = reductions(original, numbers)
        if not keeps_downstream(change, tolerance):
            continue
        score = fairness_score(change)
        if score > best_score + TIE:
            best, best_score = key, score
    return best


def choose_alpha(alphas: Iterable[float], original: dict, sweep: Mapping[str, dict], tolerance: float) -> float:
    """`choose_best` over the sweep (`sweep[alpha_key(α)]`, means over seeds); 0 (the original)
    when no α keeps the downstream numbers."""
    return choose_best({float(alpha): sweep[alpha_key(alpha)] for alpha in alphas}, original, tolerance, 0.0)


def selection_numbers(
    names: list[str], original: dict, reported_means: Mapping[str, dict], validation: dict | None = None
) -> tuple[dict, dict[str, dict], str]:
    """(the original's numbers, each candidate's numbers, which sets) that a choice among `names` is
    made on: the validation sets' (means over seeds) when `validation` ({"original": numbers,
    "per_seed": [{name: numbers}]}) is given, otherwise the reported (test) numbers."""
    if validation is not None:
        per_seed = validation["per_seed"]
        return validation["original"], {name: mean_and_std([run[name] for run in per_seed])[0] for name in names}, "validation"
    return original, {name: reported_means[name] for name in names}, "test"
