"""Downstream metrics: image-text retrieval Recall@K and zero-shot classification accuracy.

Ranks are computed by counting, not sorting: an item's rank is the number of candidates with a
higher score plus those with an equal score and a lower index (the same tie rule as the fairness
metrics), which needs one pass over each row and no (n, n) index array.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_RECALL_KS = (1, 5, 10)
DEFAULT_TOP_K = (1, 5)
# Rows compared at once, to bound temporary memory on large retrieval sets.
ROW_CHUNK_ELEMENTS = 1 << 24


def _finite_matrix(name: str, values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or 0 in array.shape:
        raise ValueError(f"{name} must be a non-empty 2-D array, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite: found {int((~np.isfinite(array)).sum())} NaN/inf values")
    return array


def _check_ks(ks: Sequence[int], limit: int, what: str) -> list[int]:
    ks = [int(k) for k in ks]
    bad = [k for k in ks if k < 1 or k > limit]
    if bad:
        raise ValueError(f"k must be between 1 and the number of {what} ({limit}), got {bad}")
    return ks


def _ranks_of_targets(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of column `targets[i]` within row i of `scores` (n_rows, n_columns) -> (n_rows,)."""
    n_rows, n_columns = scores.shape
    ranks = np.empty(n_rows, dtype=np.int64)
    columns = np.arange(n_columns)
    step = max(1, ROW_CHUNK_ELEMENTS // n_columns)
    for start in range(0, n_rows, step):
        rows = slice(start, start + step)
        block = scores[rows]
        target = targets[rows]
        target_scores = block[np.arange(block.shape[0]), target][:, None]
        ahead = (block > target_scores) | ((block == target_scores) & (columns < target[:, None]))
        ranks[rows] = ahead.sum(axis=1)
    return ranks


def recall_at_k(similarity, image_index_of_text, ks: Sequence[int] = DEFAULT_RECALL_KS) -> dict:
    """Text-to-image and image-to-text Recall@K (Flickr30k/COCO protocol).

    Args:
        similarity: (n_texts, n_images) score of each caption against each image.
        image_index_of_text: (n_texts,) index of the image each caption describes; every image
            must have at least one caption (typically five).
        ks: cut-offs.

    Returns:
        A dict with "text_to_image" (k -> the fraction of captions whose image is in the top-k images)
            and "image_to_text" (k -> the fraction of images with at least one caption in the top-k).
    """
    scores = _finite_matrix("similarity", similarity)
    n_texts, n_images = scores.shape
    owners = np.asarray(image_index_of_text)
    if owners.shape != (n_texts,):
        raise ValueError(f"image_index_of_text must have shape ({n_texts},), got {owners.shape}")
    if not np.issubdtype(owners.dtype, np.integer) or owners.min() < 0 or owners.max() >= n_images:
        raise ValueError(f"image_index_of_text must hold image indices in [0, {n_images}), got {owners[:5]}...")
    uncaptioned = np.setdiff1d(np.arange(n_images), owners)
    if uncaptioned.size:
        raise ValueError(f"{uncaptioned.size} images have no caption (first: image {uncaptioned[0]})")
    text_ranks = _ranks_of_targets(scores, owners)
    # Image-to-text: an image's rank is that of its best caption. Rank every caption within its
    # image's column, then keep the minimum per image.
    caption_ranks = _ranks_of_targets(np.ascontiguousarray(scores.T[owners]), np.arange(n_texts))
    image_ranks = np.full(n_images, n_texts, dtype=np.int64)
    np.minimum.at(image_ranks, owners, caption_ranks)
    t2i_ks = _check_ks(ks, n_images, "images")
    i2t_ks = _check_ks(ks, n_texts, "texts")
    return {
        "text_to_image": {k: float((text_ranks < k).mean()) for k in t2i_ks},
        "image_to_text": {k: float((image_ranks < k).mean()) for k in i2t_ks},
    }


def zero_shot_accuracy(logits, labels, top_k: Sequence[int] = DEFAULT_TOP_K) -> dict[int, float]:
    """Top-k accuracy from class logits.

    Args:
        logits: (n_images, n_classes) scores, e.g. image embeddings against prompt-ensemble class
            embeddings.
        labels: (n_images,) true class indices.
        top_k: cut-offs, each at most n_classes.

    Returns:
        {k: fraction of images whose true class is among the k best-scored classes}.
    """
    scores = _finite_matrix("logits", logits)
    targets = np.asarray(labels)
    if targets.shape != (scores.shape[0],):
        raise ValueError(f"labels must have shape ({scores.shape[0]},), got {targets.shape}")
    if not np.issubdtype(targets.dtype, np.integer) or targets.min() < 0 or targets.max() >= scores.shape[1]:
        raise ValueError(f"labels must be class indices in [0, {scores.shape[1]})")
    ranks = _ranks_of_targets(scores, targets)
    return {k: float((ranks < k).mean()) for k in _check_ks(top_k, scores.shape[1], "classes")}
