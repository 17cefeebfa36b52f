"""SPD, fitted on attribute-labelled embeddings.

1. The attribute subspace, by iterative nullspace projection (INLP, Ravfogel et al. 2020): a linear
   classifier (scikit-learn's logistic regression) learns the attribute from the unit-norm
   embeddings of one part of the labelled set; its weight vectors, orthonormalized against the
   directions found so far, are new directions of the subspace; the embeddings are projected onto
   the orthogonal complement of all directions found and the next classifier is fitted there, until
   the requested number of axes is reached (or the classifier finds no new direction).
2. The neutral value: the mean of the held-out part's low-confidence samples, as SFID's
   (`cf_hf.methods.low_confidence`).
3. With U (d, k) the first k directions and P = U Uᵀ: `z -> (I − P) z + P μ`, the embedding's
   component in the subspace replaced by the neutral value's.

Step 3 is exactly affine (A = I − P, b = P μ), applied to unit-norm embeddings and renormalized
(`EmbeddingTransform`); the offset keeps it from folding into CLIP's projections. The same map is
applied to images and texts (the directions live in CLIP's shared embedding space); with labelled
text embeddings the text tower gets a fit of its own.

Several attributes at once (cf_hf's extension; the authors debias one attribute at a time): INLP and a
neutral value per attribute; k is per attribute (each attribute's first k directions); U spans the
union of their directions (stacked and orthonormalized, dependent directions dropped) and μ is the mean
of the attributes' neutral values. With one attribute the fit is the single-attribute fit, bit for bit.
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
    fit_forest,
    fits_record,
    labelled_towers,
    low_confidence_mean,
    per_attribute,
)

DEFAULT_AXES = (4,)
# A classifier weight whose part orthogonal to the directions found is below this norm (relative to
# the weight's) adds no direction: the attribute is no longer linearly decodable along a new axis.
NEW_DIRECTION_TOLERANCE = 1e-6
# The inverse regularization strength of each INLP classifier (scikit-learn's default).
DEFAULT_INVERSE_REGULARIZATION = 1.0
CLASSIFIER_MAX_ITERATIONS = 2000


def check_axes(axes: Sequence[int], dimension: int) -> list[int]:
    """The swept numbers of axes as ints, each in 1..d−1 (all d would erase every embedding)."""
    counts = [int(value) for value in axes]
    if not counts:
        raise MethodError("SPD needs at least one number of axes")
    bad = [value for value in counts if not 1 <= value < dimension]
    if bad:
        raise MethodError(f"axes {bad}: the number of removed axes must be between 1 and the embedding size "
                          f"minus one ({dimension - 1})")
    if len(set(counts)) != len(counts):
        raise MethodError(f"axes lists a value twice: {counts}")
    return counts


def inlp_directions(embeddings: np.ndarray, labels: np.ndarray, max_axes: int, seed: int = 0,
                    inverse_regularization: float = DEFAULT_INVERSE_REGULARIZATION) -> np.ndarray:
    """Orthonormal directions (k, d), k <= `max_axes`, in the order INLP finds them, of the subspace in
    which `labels` (n,) are linearly decodable from `embeddings` (n, d)."""
    from sklearn.linear_model import LogisticRegression

    dimension = embeddings.shape[1]
    directions = np.zeros((0, dimension))
    projected = embeddings
    while len(directions) < max_axes:
        classifier = LogisticRegression(C=inverse_regularization, max_iter=CLASSIFIER_MAX_ITERATIONS,
                                        random_state=seed).fit(projected, labels)
        found = []
        # One weight vector per value (one for two values); the strongest first.
        for weight in sorted(classifier.coef_, key=lambda row: -np.linalg.norm(row)):
            basis = np.vstack([directions, *found]) if found else directions
            residual = weight - basis.T @ (basis @ weight)
            if np.linalg.norm(residual) > NEW_DIRECTION_TOLERANCE * max(np.linalg.norm(weight), 1e-300):
                found.append(residual / np.linalg.norm(residual))
        if not found:
            break
        directions = np.vstack([directions, *found])[:max_axes]
        projected = embeddings - (embeddings @ directions.T) @ directions
    return directions


def subspace_replacement(directions: np.ndarray, neutral: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A (d, d), b (d,)) of replacing the component in span(`directions` (k, d)) by `neutral`'s:
    A = I − UUᵀ, b = UUᵀ μ."""
    projection = directions.T @ directions
    return np.eye(directions.shape[1]) - projection, projection @ neutral


class _TowerFit:
    """One tower's INLP directions and neutral value."""

    def __init__(self, data: LabelledEmbeddings, max_axes: int, n_trees: int, threshold: float, seed: int,
                 inverse_regularization: float):
        fit_embeddings, fit_labels = data.fit_part
        self.directions = inlp_directions(fit_embeddings, fit_labels, max_axes, seed, inverse_regularization)
        if len(self.directions) < max_axes:
            raise MethodError(f"INLP found {len(self.directions)} direction(s) along which {data.attribute!r} is "
                              f"linearly decodable, fewer than the {max_axes} axes asked for: ask for at most "
                              f"{len(self.directions)}")
        forest = fit_forest(fit_embeddings, fit_labels, n_trees, seed)
        self.neutral = low_confidence_mean(forest, data.held_out_part, threshold)
        self.record = {"samples": len(data.embeddings), "fit_samples": len(data.split.fit),
                       "held_out_samples": len(data.split.held_out), "low_confidence_samples": self.neutral.count,
                       "values": sorted(set(data.labels.tolist()))}

    def parts(self, axes: int) -> tuple[np.ndarray, np.ndarray]:
        return subspace_replacement(self.directions[:axes], self.neutral.mean)


# Singular values below this fraction of the largest are dependent directions of the attributes' union.
RANK_TOLERANCE = 1e-6


def joint_subspace_replacement(fits: Sequence[_TowerFit], axes: int) -> tuple[np.ndarray, np.ndarray]:
    """(A, b) of several attributes' fits: U an orthonormal basis of the union of each one's first `axes`
    directions, A = I − UUᵀ, b = UUᵀ μ̄ with μ̄ the mean of their neutral values."""
    if len(fits) == 1:
        return fits[0].parts(axes)
    stacked = np.vstack([fit.directions[:axes] for fit in fits])
    _, singular_values, right = np.linalg.svd(stacked, full_matrices=False)
    rank = int((singular_values > RANK_TOLERANCE * singular_values[0]).sum())
    neutral = np.mean([fit.neutral.mean for fit in fits], axis=0)
    return subspace_replacement(right[:rank], neutral)


def spd_transforms(
    image_embeddings: np.ndarray,
    labels: Sequence | Mapping[str, Sequence],
    axes: Sequence[int] = DEFAULT_AXES,
    attribute: str | Sequence[str] = "attribute",
    text_embeddings: np.ndarray | None = None,
    text_labels: Sequence | Mapping[str, Sequence] | None = None,
    confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
    n_trees: int = DEFAULT_TREES,
    held_out_fraction: float = DEFAULT_HELD_OUT_FRACTION,
    inverse_regularization: float = DEFAULT_INVERSE_REGULARIZATION,
    seed: int = 0,
    fitted_on: dict | None = None,
) -> list[EmbeddingTransform]:
    """SPD fitted on attribute-labelled embeddings: one transform per number of removed axes.

    Args:
        image_embeddings: (n, d) image embeddings of an attribute-labelled set (normalized here).
        labels: (n,) their values of `attribute` (two values at least), or attribute -> (n,) labels for
            several attributes removed jointly (`attribute` is then ignored).
        axes: the numbers k of subspace directions replaced per attribute (a sweep), each in 1..d−1; the
            first k directions INLP finds.
        text_embeddings, text_labels: (n_t, d) labelled text embeddings and their labels for a text
            fit of its own; None: the texts get the image fit.
        confidence_threshold, n_trees, held_out_fraction: the neutral value's low-confidence samples
            (`cf_hf.methods.low_confidence`).
        inverse_regularization: C of each INLP logistic regression.

    Returns:
        `EmbeddingTransform`s named `spd-axes=<k>`, image and text parts set.
    """
    names, images, texts = labelled_towers(image_embeddings, labels, attribute, text_embeddings, text_labels,
                                           held_out_fraction, seed, "spd")
    counts = check_axes(axes, images[names[0]].embeddings.shape[1])
    image_fits = [_TowerFit(images[name], max(counts), n_trees, confidence_threshold, seed, inverse_regularization)
                  for name in names]
    text_fits = ([_TowerFit(texts[name], max(counts), n_trees, confidence_threshold, seed, inverse_regularization)
                  for name in names] if texts is not None else image_fits)
    record = {**fits_record(names, image_fits, text_fits, texts is not None),
              "directions": per_attribute(names, image_fits, lambda fit: len(fit.directions)), **(fitted_on or {})}
    transforms = []
    for count in counts:
        image_matrix, image_offset = joint_subspace_replacement(image_fits, count)
        text_matrix, text_offset = joint_subspace_replacement(text_fits, count)
        settings = {**attribute_settings(names), "axes": count, "confidence_threshold": confidence_threshold,
                    "n_trees": n_trees, "held_out_fraction": held_out_fraction,
                    "inverse_regularization": inverse_regularization, "seed": seed,
                    "text_fit": "texts" if texts is not None else "image"}
        transforms.append(EmbeddingTransform(
            method="spd", settings=settings, fitted_on=record, image_matrix=image_matrix, image_offset=image_offset,
            text_matrix=text_matrix, text_offset=text_offset, swept=("axes",)))
    return transforms
