"""CLIP-clip (Wang et al. 2021, "Are gender-neutral queries really gender-neutral?").

Training-free. Rank the embedding dimensions by their mutual information with the protected
attribute on an attribute-labelled image set, keep the `m` least informative ones and zero the
others, in both towers. A kept-dimension mask is a diagonal linear map: it folds into
`visual_projection` and `text_projection` (`cf_hf.methods.linear`).

Mutual information, two estimators (`ESTIMATORS`):

- `histogram` (default, the authors' estimator, `eric-ai-lab/Mitigate-Gender-Bias-in-Image-Search`):
  per dimension, a 64 × 64 joint histogram of the dimension's values and the attribute's integer
  codes (values in sorted order), smoothed with a Gaussian (σ = 1 bin, zero outside the grid),
  plus machine epsilon in every cell, normalized to a joint distribution;
  `MI = Σ p log p − Σ p_x log p_x − Σ p_y log p_y` (nats). The authors compute it on the
  **unnormalized** image features (the projection's output), and so does `cf_hf.methods.clip_clip.fit`.
- `knn`: scikit-learn's `mutual_info_classif` (continuous features, k = 5 neighbours: Ross 2014's
  k-nearest-neighbour estimator for a continuous and a discrete variable). This is the estimator of
  another paper's reimplementation (`haoyusimon/VL_Debiasing`, `model_clipped.py`), not the
  authors'; kept as an option.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from cf_hf.methods.linear import LinearMethod, MethodError

DEFAULT_NEIGHBOURS = 5
HISTOGRAM, KNN = "histogram", "knn"
ESTIMATORS = (HISTOGRAM, KNN)
DEFAULT_ESTIMATOR = HISTOGRAM
# The authors' joint histogram: bins per axis and the Gaussian smoothing's σ (in bins).
HISTOGRAM_BINS = 64
HISTOGRAM_SIGMA = 1.0


def check_labels(labels: Sequence, count: int, attribute: str) -> np.ndarray:
    """Labels as an array; a clear error for a length mismatch, missing values or a single value."""
    labels = np.asarray(list(labels), dtype=object)
    if len(labels) != count:
        raise MethodError(f"{count} embeddings but {len(labels)} {attribute!r} labels")
    missing = [index for index, label in enumerate(labels)
               if label is None or (isinstance(label, float) and np.isnan(label))]
    if missing:
        raise MethodError(f"{len(missing)} image(s) have no {attribute!r} label (rows {missing[:10]}): "
                          "label every image or drop those rows")
    values = sorted({str(label) for label in labels})
    if len(values) < 2:
        raise MethodError(f"the {attribute!r} labels have a single value {values}: nothing to measure against")
    return np.asarray([str(label) for label in labels])


def histogram_mutual_information(values: np.ndarray, codes: np.ndarray) -> float:
    """The authors' smoothed joint-histogram mutual information (nats) of one dimension's values (n,)
    with integer label codes (n,)."""
    from scipy import ndimage

    joint = np.histogram2d(values, codes, bins=(HISTOGRAM_BINS, HISTOGRAM_BINS))[0]
    joint = ndimage.gaussian_filter(joint, sigma=HISTOGRAM_SIGMA, mode="constant")
    joint = joint + np.finfo(float).eps
    joint = joint / joint.sum()
    marginal_values = joint.sum(axis=1)
    marginal_codes = joint.sum(axis=0)
    return float((joint * np.log(joint)).sum() - (marginal_values * np.log(marginal_values)).sum()
                 - (marginal_codes * np.log(marginal_codes)).sum())


def mutual_information(
    embeddings: np.ndarray, labels: Sequence, attribute: str = "attribute",
    n_neighbors: int = DEFAULT_NEIGHBOURS, seed: int = 0, estimator: str = DEFAULT_ESTIMATOR,
) -> np.ndarray:
    """Mutual information (nats) of each embedding dimension with the labels: (n, d) -> (d,).

    `estimator`: `histogram` (the authors': give unnormalized features) or `knn` (scikit-learn's,
    `n_neighbors` and `seed` apply to it only)."""
    if estimator not in ESTIMATORS:
        raise MethodError(f"unknown CLIP-clip estimator {estimator!r}: choose one of {list(ESTIMATORS)}")
    embeddings = np.asarray(embeddings, dtype=np.float64)
    labels = check_labels(labels, len(embeddings), attribute)
    if not np.isfinite(embeddings).all():
        raise MethodError("the image embeddings contain NaN or inf")
    if estimator == HISTOGRAM:
        codes = np.unique(labels, return_inverse=True)[1].astype(np.float64)
        return np.asarray([histogram_mutual_information(embeddings[:, column], codes)
                           for column in range(embeddings.shape[1])])
    from sklearn.feature_selection import mutual_info_classif

    return mutual_info_classif(embeddings, labels, discrete_features=False, n_neighbors=n_neighbors,
                               random_state=seed)


def kept_dimensions(information: np.ndarray, keep: int) -> np.ndarray:
    """Bool mask (d,) of the `keep` dimensions with the lowest information (ties: lower index)."""
    information = np.asarray(information)
    dimension = len(information)
    if not 1 <= keep <= dimension:
        raise MethodError(f"keep must be between 1 and the embedding size {dimension}, got {keep}")
    mask = np.zeros(dimension, dtype=bool)
    mask[np.argsort(information, kind="stable")[:keep]] = True
    return mask


def clip_clip_maps(
    image_embeddings: np.ndarray,
    labels: Sequence | Mapping[str, Sequence],
    keep: Sequence[int],
    attribute: str | None = None,
    n_neighbors: int = DEFAULT_NEIGHBOURS,
    seed: int = 0,
    fitted_on: dict | None = None,
    estimator: str = DEFAULT_ESTIMATOR,
) -> list[LinearMethod]:
    """One fitted method per value of `keep` (the number of dimensions kept).

    Args:
        image_embeddings: (n, d) image embeddings of the original model on an attribute-labelled set
            (unnormalized for the `histogram` estimator, as the authors).
        labels: (n,) the images' values of `attribute`; or attribute -> (n,) labels to remove several
            attributes at once (a dimension's information is then the sum over the attributes).
        keep: the numbers of dimensions to keep (a sweep), each in 1..d.
        estimator: `histogram` (the authors') or `knn` (`mutual_information`).
    """
    keep = [int(value) for value in keep]
    if not keep:
        raise MethodError("CLIP-clip needs at least one value of keep")
    if not isinstance(labels, Mapping):
        if attribute is None:
            raise MethodError("name the attribute the labels belong to (attribute=...)")
        labels = {attribute: labels}
    if not labels:
        raise MethodError("CLIP-clip needs the labels of at least one attribute")
    per_attribute = {name: mutual_information(image_embeddings, values, name, n_neighbors, seed, estimator)
                     for name, values in labels.items()}
    information = np.sum(list(per_attribute.values()), axis=0)
    for value in keep:
        kept_dimensions(information, value)  # validates every value before any fit is returned
    described = (f"histogram ({HISTOGRAM_BINS}x{HISTOGRAM_BINS} joint histogram, Gaussian sigma={HISTOGRAM_SIGMA:g}; "
                 "the authors')" if estimator == HISTOGRAM else f"knn (sklearn mutual_info_classif, k={n_neighbors})")
    record = {"images": len(image_embeddings), "estimator": described,
              "mutual_information": {name: [round(float(value), 6) for value in values]
                                     for name, values in per_attribute.items()}, **(fitted_on or {})}
    fits = []
    for value in keep:
        mask = np.diag(kept_dimensions(information, value).astype(np.float64))
        fits.append(LinearMethod(method="clip_clip", settings={"attribute": "+".join(labels), "keep": value,
                                                                   "estimator": estimator},
                                 fitted_on=record, image_map=mask, text_map=mask, swept=("keep",)))
    return fits
