"""Group metrics: worst-group and balanced accuracy, worst-group recall, and ABLE."""

from __future__ import annotations

import numpy as np

from .fairness import _check_k, _top_k, check_labels_present, encode_labels


def _same_length(**arrays) -> list[np.ndarray]:
    """The arrays as numpy, checked: 1-D, one length, not empty, no missing (None/NaN) value."""
    for name, array in arrays.items():
        check_labels_present(array, name)
    values = [np.asarray(array) for array in arrays.values()]
    lengths = {name: value.shape for name, value in zip(arrays, values)}
    if len({shape for shape in lengths.values()}) != 1 or values[0].ndim != 1:
        raise ValueError(f"expected 1-D arrays of one length, got shapes {lengths}")
    if values[0].shape[0] == 0:
        raise ValueError("no examples: the arrays are empty")
    return values


def group_accuracies(predictions, labels, attributes) -> dict[tuple, float]:
    """Accuracy of each (class, attribute value) group present in the data.

    Args:
        predictions, labels: (n,) predicted and true classes.
        attributes: (n,) sensitive-attribute value of each example.
    """
    predictions, labels, attributes = _same_length(
        predictions=predictions, labels=labels, attributes=attributes
    )
    groups, group_of = np.unique(np.stack([labels.astype(str), attributes.astype(str)], axis=1),
                                 axis=0, return_inverse=True)
    group_of = group_of.ravel()
    correct = np.bincount(group_of, weights=predictions == labels, minlength=len(groups))
    sizes = np.bincount(group_of, minlength=len(groups))
    return {tuple(group): float(value) for group, value in zip(groups, correct / sizes)}


def worst_group_accuracy(predictions, labels, attributes) -> float:
    """Lowest accuracy over (class, attribute value) groups."""
    return min(group_accuracies(predictions, labels, attributes).values())


def balanced_accuracy(predictions, labels, attributes) -> float:
    """Unweighted mean accuracy over (class, attribute value) groups."""
    return float(np.mean(list(group_accuracies(predictions, labels, attributes).values())))


def worst_group_recall(scores, query_concepts, image_concepts, image_attributes, k: int) -> dict:
    """Recall@k of each attribute group among the images of the query's concept, and the worst.

    For a query of concept c, the recall of attribute value a is the share of the gallery images of
    concept c with value a that appear in the top-k. Per value, recalls are averaged over the
    queries whose concept has images of that value.

    Args:
        scores: (n_queries, n_images) similarities.
        query_concepts: (n_queries,) concept of each query.
        image_concepts, image_attributes: (n_images,) concept and attribute value of each image.
        k: cut-off.

    Returns:
        {"worst": min over values, "per_group": {value: mean recall}}.
    """
    array = np.asarray(scores, dtype=np.float64)
    array = array[None, :] if array.ndim == 1 else array
    if array.ndim != 2 or not np.isfinite(array).all():
        raise ValueError("scores must be a finite (n_queries, n_images) array")
    image_concepts, image_attributes = _same_length(
        image_concepts=image_concepts, image_attributes=image_attributes
    )
    check_labels_present(np.atleast_1d(np.asarray(query_concepts, dtype=object)), "query_concepts")
    query_concepts = np.atleast_1d(np.asarray(query_concepts))
    if query_concepts.shape != (array.shape[0],) or image_concepts.shape != (array.shape[1],):
        raise ValueError(
            f"shape mismatch: scores {array.shape}, query_concepts {query_concepts.shape}, "
            f"image_concepts {image_concepts.shape}"
        )
    _check_k(k, array.shape[1])
    codes, values = encode_labels(image_attributes, array.shape[1])
    top = _top_k(array, k)
    relevant = image_concepts[None, :] == query_concepts[:, None]  # (n_queries, n_images)
    retrieved = np.zeros_like(relevant)
    np.put_along_axis(retrieved, top, True, axis=1)
    one_hot = codes[:, None] == np.arange(len(values))  # (n_images, n_values)
    totals = relevant.astype(np.int64) @ one_hot  # (n_queries, n_values)
    hits = (relevant & retrieved).astype(np.int64) @ one_hot
    defined = totals > 0
    if not defined.any():
        raise ValueError("no query concept has images in the gallery: recall is undefined")
    with np.errstate(invalid="ignore", divide="ignore"):
        recalls = np.where(defined, hits / totals, 0.0)
    per_group = {
        values[index].item(): float(recalls[defined[:, index], index].mean())
        for index in range(len(values))
        if defined[:, index].any()
    }
    return {"worst": min(per_group.values()), "per_group": per_group}


def able(max_skew: float, accuracy: float) -> float:
    """ABLE: harmonic mean of exp(-MaxSkew) and the downstream accuracy as a fraction in [0, 1]."""
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy must be a fraction in [0, 1], got {accuracy} (percent? divide by 100)")
    if max_skew < 0 or not np.isfinite(max_skew):
        raise ValueError(f"max_skew must be finite and >= 0, got {max_skew}")
    fairness = float(np.exp(-max_skew))
    if fairness + accuracy == 0:
        return 0.0
    return 2 * fairness * accuracy / (fairness + accuracy)
