"""Ranking fairness metrics: Skew@k, MaxSkew@k, MinSkew@k and NDKL@k, vectorised over queries.

This file is the single implementation of the math. It depends on numpy alone so that it can be
copied verbatim next to the `evaluate` modules (`cf_hf/metrics/modules/<name>/fairness.py`, kept
identical by `cf_hf.metrics.modules.build_modules` and checked by the tests).

Definitions (a query ranks a gallery of images that carry a sensitive-attribute label):

* top-k: images sorted by descending score; ties are broken by the lower image index, so the
  ranking is deterministic and independent of the sort algorithm.
* ``p_top(a)``: share of attribute value ``a`` among the top-k.
* ``p_desired(a)``: ``"equal_opportunity"`` = uniform over the values present in the gallery;
  ``"demographic_parity"`` = each value's share of the gallery; or an explicit mapping.
* ``Skew_a@k = ln p_top(a) - ln p_desired(a)``; ``MaxSkew@k = max_a``, ``MinSkew@k = min_a``.
* ``NDKL@k = (1/Z) sum_{i=1..k} KL(p_top_i || p_desired) / log2(i + 1)``,
  ``Z = sum_{i=1..k} 1 / log2(i + 1)``, KL with natural log, terms with ``p_top_i(a) = 0`` skipped.

Conventions (``convention=``):

* ``"berg"`` (default): compatible with the reference implementation of Berg et al. (2022), used by
  published numbers: a value absent from the top-k counts as ``1/k`` before the log, MaxSkew is
  clamped at >= 0 and MinSkew at <= 0. NDKL is the same in both conventions.
* ``"exact"``: the plain definitions: an absent value gives ``Skew = -inf``; no clamping.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

EQUAL_OPPORTUNITY = "equal_opportunity"
DEMOGRAPHIC_PARITY = "demographic_parity"
CONVENTIONS = ("berg", "exact")
# Desired shares must sum to one up to this tolerance.
SHARE_TOLERANCE = 1e-6
# Elements processed at once (rows of the score matrix, or of NDKL's prefix counts): bounds the
# temporary memory to a few hundred MB whatever the number of queries.
QUERY_CHUNK_ELEMENTS = 1 << 24


def _as_scores(scores) -> tuple[np.ndarray, bool]:
    """Scores as a 2-D float array (n_queries, n_images) and whether the input was 1-D."""
    array = np.asarray(scores)
    if array.dtype == object or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"scores must be numeric, got dtype {array.dtype}")
    if array.ndim not in (1, 2):
        raise ValueError(
            f"scores must have shape (n_images,) or (n_queries, n_images), got shape {array.shape}"
        )
    single = array.ndim == 1
    array = array[None, :] if single else array
    if array.shape[1] == 0:
        raise ValueError("the gallery is empty: scores has 0 images")
    if array.shape[0] == 0:
        raise ValueError("scores has 0 queries")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    return array, single


def _check_finite(array: np.ndarray, first_query: int = 0) -> None:
    # NaN and +-inf propagate to the max or the min: two reductions, no full-size mask.
    if np.isfinite(array.max()) and np.isfinite(array.min()):
        return
    finite = np.isfinite(array)
    if not finite.all():
        query, image = np.argwhere(~finite)[0]
        raise ValueError(
            f"scores must be finite: found {array[query, image]} at query {first_query + query}, "
            f"image {image} ({int((~finite).sum())} non-finite values in this block of queries)"
        )


def check_labels_present(labels, name: str = "labels") -> None:
    """Raise a ValueError naming the positions of missing labels (None or NaN) in 1-D labels.

    A missing label is not an attribute value: counted as one it would form a group of its own, and
    mixed with strings it breaks the sort. Sequences are checked before numpy converts them, which
    would turn a NaN among strings into the string "nan".
    """
    values = labels if isinstance(labels, np.ndarray) else np.asarray(labels, dtype=object)
    if values.ndim != 1:
        return
    if values.dtype.kind == "f":
        missing = np.isnan(values)
    elif values.dtype == object:
        missing = np.fromiter(
            (value is None or (isinstance(value, (float, np.floating)) and value != value) for value in values),
            dtype=bool,
            count=values.shape[0],
        )
    else:
        return
    if missing.any():
        positions = np.flatnonzero(missing)
        shown = ", ".join(str(position) for position in positions[:10])
        raise ValueError(
            f"{name} has {positions.shape[0]} missing value(s) (None or NaN) at position(s) {shown}"
            f"{' ...' if positions.shape[0] > 10 else ''}: give every image a label, or leave the "
            "unlabelled images out of the gallery"
        )


def encode_labels(labels, n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """Attribute labels as integer codes (n_images,) and the sorted distinct values (n_values,).

    None and NaN are refused (`check_labels_present`).
    """
    check_labels_present(labels)
    values = np.asarray(labels)
    if values.ndim != 1:
        raise ValueError(f"labels must be 1-D (one attribute value per image), got shape {values.shape}")
    if values.shape[0] != n_images:
        raise ValueError(
            f"shape mismatch: scores rank {n_images} images but labels has {values.shape[0]} values"
        )
    distinct, codes = np.unique(values, return_inverse=True)
    if distinct.shape[0] < 2:
        raise ValueError(
            f"the attribute has a single value ({distinct[0]!r}) in the gallery: skew and NDKL "
            "need at least two values to compare"
        )
    return codes.astype(np.int64), distinct


def desired_distribution(desired, distinct: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Desired share of each distinct value, (n_values,), as described in the module docstring."""
    n_values = distinct.shape[0]
    if isinstance(desired, str):
        if desired == EQUAL_OPPORTUNITY:
            return np.full(n_values, 1.0 / n_values)
        if desired == DEMOGRAPHIC_PARITY:
            return np.bincount(codes, minlength=n_values) / codes.shape[0]
        raise ValueError(
            f"desired={desired!r} is not known: use {EQUAL_OPPORTUNITY!r}, {DEMOGRAPHIC_PARITY!r} "
            "or a mapping attribute value -> share"
        )
    if not isinstance(desired, Mapping):
        raise ValueError(f"desired must be a string or a mapping value -> share, got {type(desired).__name__}")
    present = {value.item() if hasattr(value, "item") else value: index for index, value in enumerate(distinct)}
    absent = [value for value in desired if value not in present]
    if absent:
        raise ValueError(
            f"desired names values absent from the gallery: {absent!r} (present: {sorted(present)!r})"
        )
    missing = [value for value in present if value not in desired]
    if missing:
        raise ValueError(f"desired gives no share for the gallery values {missing!r}")
    shares = np.zeros(n_values)
    for value, share in desired.items():
        shares[present[value]] = float(share)
    if (shares <= 0).any():
        raise ValueError(f"desired shares must be positive, got {dict(desired)!r}")
    if abs(shares.sum() - 1.0) > SHARE_TOLERANCE:
        raise ValueError(f"desired shares must sum to 1, got {shares.sum():.6g} from {dict(desired)!r}")
    return shares


def top_k_indices(scores, k: int) -> np.ndarray:
    """Indices of the k best images per query, best first: (n_queries, k), or (k,) for 1-D scores.

    Descending score; ties broken by the lower image index.
    """
    array, single = _as_scores(scores)
    _check_k(k, array.shape[1])
    _check_finite(array)
    indices = _top_k(array, k)
    return indices[0] if single else indices


def _top_k(array: np.ndarray, k: int) -> np.ndarray:
    """`top_k_indices` on validated scores (n_queries, n_images).

    A partial selection of the k + 1 best (`torch.topk` when torch is importable, else
    `np.argpartition`) finds a top-k set in linear time. Where the k-th and (k+1)-th best scores are
    equal, a tie straddles the cut and the selection may not have kept the lower indices: only those
    rows are redone with a stable full sort. The set is then ordered by (descending score,
    ascending index), so ties resolve exactly as a stable descending sort would, whichever
    selection ran.
    """
    n_queries, n_images = array.shape
    if k == n_images:
        part = np.tile(np.arange(n_images), (n_queries, 1))
    else:
        part, straddling = _select(array, k)
        if straddling.any():
            rows = np.flatnonzero(straddling)
            part[rows] = np.argsort(-array[rows], axis=1, kind="stable")[:, :k]
    part_scores = np.take_along_axis(array, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    return np.take_along_axis(part, order, axis=1)


def _select(array: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """A top-k set per row, (n_queries, k), and whether a tie straddles the k-th place, (n_queries,)."""
    try:
        import torch  # Optional: its multi-threaded topk is several times faster than argpartition.
    except ImportError:
        torch = None
    if torch is not None and array.dtype in (np.float16, np.float32, np.float64):
        values, indices = torch.topk(torch.from_numpy(np.ascontiguousarray(array)), k + 1, dim=1)
        return indices[:, :k].numpy(), (values[:, k - 1] == values[:, k]).numpy()
    n_images = array.shape[1]
    # After partitioning at both places, column n-k-1 holds the (k+1)-th best, n-k the k-th best.
    part = np.argpartition(array, (n_images - k - 1, n_images - k), axis=1)
    kth = np.take_along_axis(array, part[:, n_images - k : n_images - k + 1], axis=1)[:, 0]
    next_best = np.take_along_axis(array, part[:, n_images - k - 1 : n_images - k], axis=1)[:, 0]
    return part[:, n_images - k :], kth == next_best


def _check_k(k, n_images: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be an integer, got {k!r}")
    if k < 1 or k > n_images:
        raise ValueError(f"k must be between 1 and the gallery size {n_images}, got k={k}")


def _query_chunks(n_queries: int, elements_per_query: int):
    rows = max(1, QUERY_CHUNK_ELEMENTS // elements_per_query)
    for start in range(0, n_queries, rows):
        yield slice(start, min(start + rows, n_queries))


def _skews_from_counts(counts: np.ndarray, k: int, desired: np.ndarray, convention: str) -> np.ndarray:
    """Skew of every value, (n_queries, n_values), from top-k counts (n_queries, n_values)."""
    shares = counts / k
    if convention == "berg":
        shares = np.where(counts == 0, 1.0 / k, shares)
    with np.errstate(divide="ignore"):
        return np.log(shares) - np.log(desired)


def _ndkl_from_ranked(ranked_codes: np.ndarray, n_values: int, desired: np.ndarray) -> np.ndarray:
    """NDKL@k per query from the attribute codes of the ranked top-k, (n_queries, k) -> (n_queries,)."""
    k = ranked_codes.shape[1]
    one_hot = ranked_codes[:, :, None] == np.arange(n_values)
    prefix_counts = np.cumsum(one_hot, axis=1, dtype=np.int32)
    prefix_shares = prefix_counts / np.arange(1, k + 1)[None, :, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(prefix_counts > 0, prefix_shares * np.log(prefix_shares / desired), 0.0)
    divergence = terms.sum(axis=2)
    weights = 1.0 / np.log2(np.arange(2, k + 2))
    # Row-wise sum rather than a matrix product: results must not depend on the chunking.
    return (divergence * weights).sum(axis=1) / weights.sum()


def fairness_metrics(
    scores,
    labels,
    k: int | Sequence[int],
    desired="equal_opportunity",
    convention: str = "berg",
    metrics: Sequence[str] = ("max_skew", "min_skew", "ndkl"),
) -> dict[int, dict[str, np.ndarray]]:
    """All requested metrics at every k in one pass over the scores.

    Args:
        scores: (n_queries, n_images) or (n_images,) similarity of each query to each image.
        labels: (n_images,) attribute value of each image (ints or strings).
        k: one cut-off or several; each between 1 and n_images.
        desired: ``"equal_opportunity"``, ``"demographic_parity"`` or a mapping value -> share.
        convention: ``"berg"`` (default) or ``"exact"`` (see the module docstring).
        metrics: any of ``"max_skew"``, ``"min_skew"``, ``"ndkl"``, ``"skew"``; ``"skew"`` gives the
            per-value skews (n_queries, n_values) in the order of ``np.unique(labels)``.

    Returns:
        {k: {metric: (n_queries,) float64 array}}.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention={convention!r} is not known: use one of {CONVENTIONS}")
    unknown = set(metrics) - {"max_skew", "min_skew", "ndkl", "skew"}
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}: use max_skew, min_skew, ndkl, skew")
    array, _ = _as_scores(scores)
    n_queries, n_images = array.shape
    codes, distinct = encode_labels(labels, n_images)
    shares = desired_distribution(desired, distinct, codes)
    ks = [k] if np.ndim(k) == 0 else list(k)
    if not ks:
        raise ValueError("k must name at least one cut-off")
    for cut in ks:
        _check_k(cut, n_images)
    n_values = distinct.shape[0]
    results = {cut: {name: [] for name in metrics} for cut in ks}
    k_max = max(ks)
    # A query costs its scores in the top-k selection and k_max x n_values in NDKL's prefix counts.
    for rows in _query_chunks(n_queries, max(n_images, k_max * n_values)):
        _check_finite(array[rows], rows.start)
        ranked_codes = codes[_top_k(array[rows], k_max)]
        for cut in ks:
            top = ranked_codes[:, :cut]
            if {"max_skew", "min_skew", "skew"} & set(metrics):
                offsets = top + n_values * np.arange(top.shape[0])[:, None]
                counts = np.bincount(offsets.ravel(), minlength=top.shape[0] * n_values)
                skews = _skews_from_counts(counts.reshape(-1, n_values), cut, shares, convention)
            for name in metrics:
                if name == "skew":
                    value = skews
                elif name == "max_skew":
                    value = skews.max(axis=1)
                    value = np.maximum(value, 0.0) if convention == "berg" else value
                elif name == "min_skew":
                    value = skews.min(axis=1)
                    value = np.minimum(value, 0.0) if convention == "berg" else value
                else:
                    value = _ndkl_from_ranked(top, n_values, shares)
                results[cut][name].append(value)
    return {cut: {name: np.concatenate(parts) for name, parts in by_name.items()} for cut, by_name in results.items()}


def _single_metric(name: str, scores, labels, k: int, desired, convention: str):
    _, single = _as_scores(scores)
    if np.ndim(k) != 0:
        raise ValueError(f"k must be a single integer here, got {k!r}; use fairness_metrics for several")
    values = fairness_metrics(scores, labels, k, desired, convention, metrics=(name,))[k][name]
    return float(values[0]) if single else values


def max_skew(scores, labels, k: int, desired="equal_opportunity", convention: str = "berg"):
    """MaxSkew@k per query: (n_queries,) array, or a float for 1-D `scores`. See the module docstring."""
    return _single_metric("max_skew", scores, labels, k, desired, convention)


def min_skew(scores, labels, k: int, desired="equal_opportunity", convention: str = "berg"):
    """MinSkew@k per query: (n_queries,) array, or a float for 1-D `scores`. See the module docstring."""
    return _single_metric("min_skew", scores, labels, k, desired, convention)


def ndkl(scores, labels, k: int, desired="equal_opportunity", convention: str = "berg"):
    """NDKL@k per query: (n_queries,) array, or a float for 1-D `scores`. See the module docstring."""
    return _single_metric("ndkl", scores, labels, k, desired, convention)
