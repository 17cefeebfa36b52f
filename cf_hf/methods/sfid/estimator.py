"""SFID, fitted on attribute-labelled embeddings.

1. A random forest (scikit-learn, 100 trees) learns the attribute from the unit-norm embeddings of
   one part of the labelled set; its impurity-based feature importances rank the coordinates.
2. The held-out part's low-confidence samples (highest class probability below t = 0.7) give the
   neutral value: their mean embedding (`cf_hf.methods.low_confidence`).
3. Each embedding's m most important coordinates are replaced by the neutral value's.

Step 3 is exactly affine: `z -> A z + b` with `A = diag(keep)` (1 on the kept coordinates, 0 on the
m replaced) and `b` the neutral value on the replaced coordinates, 0 elsewhere. It is applied to
unit-norm embeddings and the result renormalized (`EmbeddingTransform`): an offset does not fold
into CLIP's bias-free projections, so the checkpoint is a model class of its own.

Text tower: with labelled text embeddings (the authors use Bias-in-Bios biographies) a second forest
is fitted on them; without, the texts get the image fit (the same coordinates and values: CLIP's
towers share the embedding space).

Several attributes at once (cf_hf's extension; the authors debias one attribute at a time): one forest
and one neutral value per attribute; m is per attribute (each attribute's m most important
coordinates), the replaced set is their union (between m and A·m coordinates for A attributes), and a
coordinate chosen by several attributes takes the mean of their neutral values. With one attribute the
fit is the single-attribute fit, bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from cf_hf.methods.embedding_transform import EmbeddingTransform
from cf_hf.methods.linear import MethodError, attribute_settings
from cf_hf.methods.low_confidence import (
    DEFAULT_CONFIDENCE_THRESHOLD,
    DEFAULT_HELD_OUT_FRACTION,
    DEFAULT_TREES,
    LabelledEmbeddings,
    NeutralValue,
    fit_forest,
    fits_record,
    labelled_towers,
    low_confidence_mean,
    per_attribute,
)

# The number of replaced coordinates the authors recommend for CLIP (50 to 100 of 512).
DEFAULT_PRUNE_COUNTS = (50,)


def check_prune_counts(prune_counts: Sequence[int], dimension: int) -> list[int]:
    """The swept m values as ints, each in 1..d; a clear error naming the bad value otherwise."""
    counts = [int(count) for count in prune_counts]
    if not counts:
        raise MethodError("SFID needs at least one number of replaced coordinates (prune_counts)")
    bad = [count for count in counts if not 1 <= count <= dimension]
    if bad:
        raise MethodError(f"prune_counts {bad}: m must be between 1 and the embedding size {dimension}")
    if len(set(counts)) != len(counts):
        raise MethodError(f"prune_counts lists a value twice: {counts}")
    return counts


def replaced_coordinates(importance: np.ndarray, count: int) -> np.ndarray:
    """Indices of the `count` most important coordinates, most important first (ties: lower index first)."""
    order = np.argsort(-np.asarray(importance, dtype=np.float64), kind="stable")
    return order[:count]


def coordinate_replacement(dimension: int, coordinates: np.ndarray, neutral: np.ndarray,
                           ) -> tuple[np.ndarray, np.ndarray]:
    """(A (d, d), b (d,)) of replacing `coordinates` by `neutral`'s values: A = diag(keep mask)."""
    keep = np.ones(dimension)
    keep[coordinates] = 0.0
    offset = np.zeros(dimension)
    offset[coordinates] = neutral[coordinates]
    return np.diag(keep), offset


class _TowerFit:
    """One tower's forest importances and neutral value."""

    def __init__(self, data: LabelledEmbeddings, n_trees: int, threshold: float, seed: int):
        fit_embeddings, fit_labels = data.fit_part
        forest = fit_forest(fit_embeddings, fit_labels, n_trees, seed)
        self.importance: np.ndarray = forest.feature_importances_
        self.neutral: NeutralValue = low_confidence_mean(forest, data.held_out_part, threshold)
        self.record = {"samples": len(data.embeddings), "fit_samples": len(data.split.fit),
                       "held_out_samples": len(data.split.held_out), "low_confidence_samples": self.neutral.count,
                       "values": sorted(set(data.labels.tolist()))}

    def parts(self, count: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
        coordinates = replaced_coordinates(self.importance, count)
        matrix, offset = coordinate_replacement(len(self.importance), coordinates, self.neutral.mean)
        return matrix, offset, coordinates.tolist()


def joint_coordinate_replacement(fits: Sequence[_TowerFit], count: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(A, b, replaced coordinates) of several attributes' fits: the union of each one's `count` most
    important coordinates, each replaced by the mean of the neutral values of the attributes that chose it."""
    if len(fits) == 1:
        return fits[0].parts(count)
    dimension = len(fits[0].importance)
    chosen = [replaced_coordinates(fit.importance, count) for fit in fits]
    totals, choosers = np.zeros(dimension), np.zeros(dimension)
    for fit, coordinates in zip(fits, chosen):
        totals[coordinates] += fit.neutral.mean[coordinates]
        choosers[coordinates] += 1
    replaced = list(dict.fromkeys(int(index) for coordinates in chosen for index in coordinates))
    keep = np.ones(dimension)
    keep[replaced] = 0.0
    offset = np.zeros(dimension)
    offset[replaced] = totals[replaced] / choosers[replaced]
    return np.diag(keep), offset, replaced


def sfid_transforms(
    image_embeddings: np.ndarray,
    labels: Sequence | Mapping[str, Sequence],
    prune_counts: Sequence[int] = DEFAULT_PRUNE_COUNTS,
    attribute: str | Sequence[str] = "attribute",
    text_embeddings: np.ndarray | None = None,
    text_labels: Sequence | Mapping[str, Sequence] | None = None,
    confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
    n_trees: int = DEFAULT_TREES,
    held_out_fraction: float = DEFAULT_HELD_OUT_FRACTION,
    seed: int = 0,
    fitted_on: dict | None = None,
) -> list[EmbeddingTransform]:
    """SFID fitted on attribute-labelled embeddings: one transform per m in `prune_counts`.

    Args:
        image_embeddings: (n, d) image embeddings of an attribute-labelled set (normalized here).
        labels: (n,) their values of `attribute` (two values at least), or attribute -> (n,) labels for
            several attributes removed jointly (`attribute` is then ignored).
        prune_counts: the numbers m of replaced coordinates per attribute (a sweep), each in 1..d.
        text_embeddings, text_labels: (n_t, d) labelled text embeddings and their (n_t,) labels for
            a text fit of its own; None: the texts get the image fit.
        confidence_threshold: t; held-out samples whose top class probability is below it are
            "low-confidence".
        n_trees: trees of the random forest.
        held_out_fraction: the stratified share of each labelled set held out for the low-confidence samples.

    Returns:
        `EmbeddingTransform`s named `sfid-m=<m>`, image and text parts set.
    """
    names, images, texts = labelled_towers(image_embeddings, labels, attribute, text_embeddings, text_labels,
                                           held_out_fraction, seed, "sfid")
    counts = check_prune_counts(prune_counts, images[names[0]].embeddings.shape[1])
    image_fits = [_TowerFit(images[name], n_trees, confidence_threshold, seed) for name in names]
    text_fits = [_TowerFit(texts[name], n_trees, confidence_threshold, seed) for name in names] if texts else image_fits
    importance = per_attribute(names, image_fits, lambda fit: [round(float(value), 8) for value in fit.importance])
    record = {**fits_record(names, image_fits, text_fits, texts is not None), "feature_importance": {"image": importance},
              **(fitted_on or {})}
    transforms = []
    for count in counts:
        image_matrix, image_offset, image_coordinates = joint_coordinate_replacement(image_fits, count)
        text_matrix, text_offset, text_coordinates = joint_coordinate_replacement(text_fits, count)
        settings = {**attribute_settings(names), "m": count, "confidence_threshold": confidence_threshold,
                    "n_trees": n_trees, "held_out_fraction": held_out_fraction, "seed": seed,
                    "text_fit": "texts" if texts is not None else "image",
                    "replaced": {"image": image_coordinates, "text": text_coordinates}}
        transforms.append(EmbeddingTransform(
            method="sfid", settings=settings, fitted_on=record, image_matrix=image_matrix, image_offset=image_offset,
            text_matrix=text_matrix, text_offset=text_offset, swept=("m",)))
    return transforms
