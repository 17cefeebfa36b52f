"""A per-query implementation of MaxSkew/MinSkew/NDKL written the way the reference code of
Berg et al. (2022, `debias_clip/measuring_bias.py`) does it: one pandas DataFrame per query,
`nlargest`, and a Python loop over the ranked rows (`iterrows`) that updates the label counts and
computes a numpy KL divergence at every rank.

Differences kept on purpose so that values can be compared with `cf_hf.metrics`: ties keep the
lower index (`keep="first"`; the reference keeps all tied rows at the cut), MinSkew is computed
beside MaxSkew, and one desired distribution is given per call.

Used only to check and time `cf_hf.metrics` against (benchmarks/metrics.py and the tests).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def _kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.sum(np.where(p != 0, p * (np.log(p) - np.log(q)), 0)))


def reference_query(scores: np.ndarray, labels: np.ndarray, k: int, desired: dict) -> tuple[float, float, float]:
    """(MaxSkew, MinSkew, NDKL) of one query in the Berg convention. `desired`: value -> share."""
    values = sorted(desired)
    position = {value: index for index, value in enumerate(values)}
    shares = np.array([desired[value] for value in values])
    frame = pd.DataFrame({"score": scores, "label": labels})
    top = frame.nlargest(k, columns="score", keep="first")
    top_counts = top["label"].value_counts()
    skews = []
    for value, share in zip(values, shares):
        proportion = top_counts.get(value, 0) / k
        proportion = proportion if proportion > 0 else 1.0 / k  # no log of 0
        skews.append(math.log(proportion) - math.log(share))
    counts = np.zeros(len(values))
    total = 0.0
    for rank, (_, row) in enumerate(top.iterrows(), start=1):
        counts[position[row["label"]]] += 1
        total += _kl_divergence(counts / rank, shares) / math.log2(rank + 1)
    normalizer = sum(1 / math.log2(rank + 1) for rank in range(1, k + 1))
    return max(max(skews), 0.0), min(min(skews), 0.0), total / normalizer


def reference_metrics(scores: np.ndarray, labels: np.ndarray, k: int, desired: dict) -> np.ndarray:
    """(n_queries, 3) array of (MaxSkew, MinSkew, NDKL), one query at a time."""
    labels = np.asarray(labels)
    return np.array([reference_query(row, labels, k, desired) for row in np.atleast_2d(scores)])
