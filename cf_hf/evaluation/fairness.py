"""Fairness retrieval: evaluates a model's embeddings on attribute-labelled galleries with the
metrics of `cf_hf.metrics` (the math lives there, once; this module ranks galleries and aggregates).

Per gallery, per sensitive attribute:
  queries = templates x concepts (or the gallery's own captions, e.g. PATA; `cf_hf.evaluation.queries`);
  each query ranks the whole gallery by cosine similarity; MaxSkew@k, MinSkew@k and NDKL@k
  (`cf_hf.metrics`) at every k below the gallery size (`fairness_ks`) for every desired distribution;
  aggregated as the mean over queries, the worst query and the mean per concept; plus worst-group
  recall@k when the gallery labels each image with a concept; and the random floor (`random_floor`).
  The (queries x gallery) score matrix is built in blocks of queries, each block from gallery chunks,
  so memory is bounded whatever the gallery size; every metric is computed per query, so the results
  do not depend on the block sizes.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cf_hf import metrics

from .results import FAIRNESS_METRICS, RESERVED_KEYS
from .sets import AttributeGallery, Query, check_templates, protocol_defaults

# The worst query: highest MaxSkew and NDKL, lowest (most negative) MinSkew.
WORST = {"max_skew": max, "min_skew": min, "ndkl": max}
# (queries, images) of the fixed tiles scores are computed in; see `score_blocks`.
SCORE_TILE = (16, 4096)


def _default(key: str):
    return list(protocol_defaults()[key])


@dataclass
class FairnessConfig:
    """The fairness protocol. None fields take the shipped defaults (`defaults.yaml`).

    Attributes:
        templates: prompt templates with `{concept}`/`{}` and optionally `{article}`.
        concepts: concept names (default: the shipped professions, `cf_hf/concepts`).
        ks: cut-offs; the first is the main k and must be below every gallery's size, the others
            are left out (with a warning) for a gallery they do not fit (see `fairness_ks`).
        desired: desired distributions; the first is the headline one.
        convention: "berg" (published-number compatible) or "exact" (see `cf_hf.metrics.fairness`).
        attributes: which sensitive attributes to evaluate (default: all of the gallery's).
        random_floor_queries: random rankings scored to report the floor a perfectly fair model
            could reach on this gallery (0 disables).
        seed: seed of the random rankings.
        score_block_mb: bound on the (queries x gallery) float32 score block held at once.
        gallery_chunk: gallery rows multiplied at once when building a score block.
    """

    templates: list[str] | None = None
    concepts: list[str] | None = None
    ks: list[int] | None = None
    desired: list[str] | None = None
    convention: str = "berg"
    attributes: list[str] | None = None
    random_floor_queries: int = 16
    seed: int = 0
    score_block_mb: int = 256
    gallery_chunk: int = 16384

    def __post_init__(self):
        self.templates = check_templates(self.templates if self.templates is not None else _default("fairness_templates"),
                                         "fairness templates")
        self.ks = [int(k) for k in (self.ks if self.ks is not None else _default("fairness_ks"))]
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"ks must be positive cut-offs, got {self.ks}")
        self.desired = list(self.desired if self.desired is not None else _default("desired_distributions"))
        known = (metrics.EQUAL_OPPORTUNITY, metrics.DEMOGRAPHIC_PARITY)
        unknown = [name for name in self.desired if name not in known]
        if unknown or not self.desired:
            raise ValueError(f"desired distributions must be among {known}, got {self.desired}")
        if self.convention not in metrics.CONVENTIONS:
            raise ValueError(f"convention={self.convention!r}: use one of {metrics.CONVENTIONS}")


# ---------------------------------------------------------------------------------------------
# Scores in bounded blocks


def score_blocks(query_embeddings: np.ndarray, image_embeddings: np.ndarray, block_mb: int, gallery_chunk: int):
    """Yield (query slice, float32 scores (n_block_queries, n_images)) covering all queries.

    A block holds about `block_mb` MB of scores (at least one tile of queries); it is filled from
    gallery chunks of about `gallery_chunk` images, converted to float32 one chunk at a time (so
    float16 or memory-mapped embeddings are never copied whole).

    Every score is computed inside a fixed tile (`SCORE_TILE` queries x images, aligned on absolute
    indices): a matrix product's rounding depends on its shape, so fixed tiles make each score, and
    therefore every ranking, identical whatever the block and chunk sizes.
    """
    tile_queries, tile_images = SCORE_TILE
    n_queries, n_images = query_embeddings.shape[0], image_embeddings.shape[0]
    rows = _round_up(max(1, int(block_mb * 2**20) // (4 * n_images)), tile_queries)
    gallery_chunk = _round_up(gallery_chunk, tile_images)
    for start in range(0, n_queries, rows):
        queries = slice(start, min(start + rows, n_queries))
        block = np.empty((queries.stop - queries.start, n_images), dtype=np.float32)
        query_block = np.ascontiguousarray(query_embeddings[queries], dtype=np.float32)
        for first in range(0, n_images, gallery_chunk):
            last = min(first + gallery_chunk, n_images)
            chunk = np.ascontiguousarray(image_embeddings[first:last], dtype=np.float32)
            for column in range(0, last - first, tile_images):
                image_tile = chunk[column:column + tile_images]
                columns = slice(first + column, first + column + image_tile.shape[0])
                for row in range(0, query_block.shape[0], tile_queries):
                    block[row:row + tile_queries, columns] = query_block[row:row + tile_queries] @ image_tile.T
            del chunk
        yield queries, block
        # Drop this block before the next is allocated: two blocks would double the bound.
        del block


def _round_up(value: int, multiple: int) -> int:
    return max(multiple, -(-int(value) // multiple) * multiple)


def random_score_blocks(n_queries: int, n_images: int, seed: int, block_mb: int):
    """Yield blocks of uniform random scores: the same numbers whatever the block size."""
    rng = np.random.default_rng(seed)
    rows = max(1, int(block_mb * 2**20) // (8 * n_images))
    for start in range(0, n_queries, rows):
        stop = min(start + rows, n_queries)
        yield slice(start, stop), rng.random((stop - start, n_images))


# ---------------------------------------------------------------------------------------------
# Fairness


def fairness_ks(ks: Sequence[int], n_images: int, gallery: str) -> tuple[list[int], list[int]]:
    """(kept, left out): the distinct cut-offs below the gallery size, in order, and the others.

    At k = n_images every ranking is the whole gallery: MaxSkew and NDKL then describe the
    gallery's composition (0 on a balanced one), whatever the model. So the main k (the first)
    must be below the gallery size, else ValueError; a later k that is not is left out.
    """
    kept, left_out = [], []
    for k in (int(k) for k in ks):
        target = kept if k < n_images else left_out
        if k not in target:
            target.append(k)
    if int(ks[0]) >= n_images:
        raise ValueError(
            f"fairness gallery {gallery!r} has {n_images} images: k = {int(ks[0])} would rank all of it, and "
            "MaxSkew/NDKL would measure the gallery's own composition (0 on a balanced one), not the model. "
            f"Pass a main k below {n_images}: --k (FairnessConfig.ks; the first k is the main one)"
        )
    return kept, left_out


def check_fairness_ks(galleries: Mapping[str, AttributeGallery], config: FairnessConfig) -> None:
    """Refuse a main k not below a gallery's size, and warn about each gallery that leaves out some
    of the requested k's (see `fairness_ks`); results.json records what was kept."""
    for name, gallery in galleries.items():
        kept, left_out = fairness_ks(config.ks, len(gallery), name)
        if left_out:
            warnings.warn(
                f"fairness gallery {name!r} has {len(gallery)} images: k = {left_out} left out (a k must be below "
                f"the gallery size); its fairness is computed at k = {kept} only",
                UserWarning, stacklevel=3,
            )


def _aggregate(values: list[float], queries: list[Query], metric: str) -> dict:
    array = np.asarray(values, dtype=np.float64)
    worst_index = int(np.argmax(array) if WORST[metric] is max else np.argmin(array))
    per_concept: dict[str, list[float]] = {}
    for value, query in zip(values, queries):
        per_concept.setdefault(query.concept, []).append(value)
    return {
        "mean": float(array.mean()),
        "std": float(array.std()),
        "worst": float(array[worst_index]),
        "worst_query": queries[worst_index].text,
        "per_concept": {concept: float(np.mean(group)) for concept, group in per_concept.items()},
        "per_query": [float(value) for value in values],
    }


def _fairness_accumulators(attributes, queries, ks, desired):
    relevant = {name: [index for index, query in enumerate(queries)
                       if query.attributes is None or name in query.attributes] for name in attributes}
    values = {name: {want: {k: {metric: [] for metric in FAIRNESS_METRICS} for k in ks} for want in desired}
              for name in attributes}
    skews = {name: {want: [] for want in desired} for name in attributes}
    return relevant, values, skews


def fairness_from_blocks(blocks: Iterable, gallery: AttributeGallery, queries: list[Query], config: FairnessConfig,
                         with_group_recall: bool = True) -> dict:
    """Fairness results from score blocks (see `score_blocks`) of `queries` against `gallery`."""
    n_images = len(gallery)
    attributes = config.attributes or list(gallery.attributes)
    missing = [name for name in attributes if name not in gallery.attributes]
    if missing:
        raise ValueError(f"gallery {gallery.name!r} has no attribute(s) {missing} (it has {list(gallery.attributes)})")
    clash = [name for name in attributes if name in RESERVED_KEYS]
    if clash:
        raise ValueError(f"attribute name(s) {clash} clash with result keys; rename them")
    ks, _ = fairness_ks(config.ks, n_images, gallery.name)
    main_k = ks[0]
    # Integer codes in sorted-value order: the metrics then sort small ints, not strings, per call,
    # and their per-value order (np.unique) is still the order of `value_names`.
    value_names, labels = {}, {}
    for name in attributes:
        value_names[name], labels[name] = np.unique(np.asarray(gallery.attributes[name]).astype(str), return_inverse=True)
    relevant, values, skews = _fairness_accumulators(attributes, queries, ks, config.desired)
    group_recall_on = with_group_recall and gallery.concepts is not None
    image_concepts = np.asarray(gallery.concepts) if group_recall_on else None
    known_concepts = set(gallery.concepts) if group_recall_on else set()
    recalls = {name: [] for name in attributes}  # per query: {value: recall} or None
    relevant_sets = {name: set(indices) for name, indices in relevant.items()}
    for rows, block in blocks:
        for name in attributes:
            selected = [index - rows.start for index in range(rows.start, rows.stop) if index in relevant_sets[name]]
            if not selected:
                continue
            # Fancy indexing copies the block: only do it when some queries are left out.
            scores = block if len(selected) == block.shape[0] else block[selected]
            for want in config.desired:
                per_k = metrics.fairness_metrics(scores, labels[name], ks, want, config.convention,
                                                 metrics=(*FAIRNESS_METRICS, "skew"))
                for k in ks:
                    for metric in FAIRNESS_METRICS:
                        values[name][want][k][metric] += per_k[k][metric].tolist()
                skews[name][want].append(per_k[main_k]["skew"])
            if group_recall_on:
                for row, index in zip(selected, (rows.start + offset for offset in selected)):
                    concept = queries[index].concept
                    if concept not in known_concepts:
                        recalls[name].append(None)
                        continue
                    result = metrics.worst_group_recall(block[row], [concept], image_concepts, labels[name], main_k)
                    recalls[name].append({str(value_names[name][code]): recall
                                          for code, recall in result["per_group"].items()})
        # Release the block before the generator allocates the next one (see `score_blocks`).
        block = scores = None
    results = {}
    for name in attributes:
        chosen = [queries[index] for index in relevant[name]]
        if not chosen:
            continue
        values_sorted = value_names[name]
        entry = {
            "values": values_sorted.tolist(),
            "n_queries": len(chosen),
            "by_desired": {
                want: {
                    str(k): {metric: _aggregate(values[name][want][k][metric], chosen, metric) for metric in FAIRNESS_METRICS}
                    for k in ks
                }
                for want in config.desired
            },
            "skew_per_value": {
                want: dict(zip(values_sorted.tolist(), np.concatenate(skews[name][want]).mean(axis=0).tolist()))
                for want in config.desired
            },
        }
        if group_recall_on and any(value is not None for value in recalls[name]):
            per_query = recalls[name]
            per_group = {
                str(value): float(np.mean([recall[value] for recall in per_query if recall and value in recall]))
                for value in values_sorted.tolist()
                if any(recall and value in recall for recall in per_query)
            }
            entry["worst_group_recall"] = {
                "k": main_k, "worst": min(per_group.values()), "per_group": per_group, "per_query": per_query,
            }
        results[name] = entry
    return {
        "n_images": n_images,
        "ks": ks,
        "main_k": main_k,
        "queries": [query.text for query in queries],
        "query_concepts": [query.concept for query in queries],
        "attributes": results,
    }


def evaluate_fairness(text_embeddings: np.ndarray, image_embeddings: np.ndarray, gallery: AttributeGallery,
                      queries: list[Query], config: FairnessConfig) -> dict:
    """Fairness of one model from its embeddings.

    Args:
        text_embeddings: (n_queries, dim) unit-norm embeddings of `queries`.
        image_embeddings: (n_images, dim) unit-norm embeddings of the gallery (any float dtype,
            memory-mapped arrays welcome).
    """
    if text_embeddings.shape[0] != len(queries) or image_embeddings.shape[0] != len(gallery):
        raise ValueError(
            f"shape mismatch: {text_embeddings.shape[0]} query embeddings for {len(queries)} queries, "
            f"{image_embeddings.shape[0]} image embeddings for {len(gallery)} images"
        )
    blocks = score_blocks(text_embeddings, image_embeddings, config.score_block_mb, config.gallery_chunk)
    return fairness_from_blocks(blocks, gallery, queries, config)


def random_floor(gallery: AttributeGallery, config: FairnessConfig) -> dict:
    """Mean MaxSkew/MinSkew/NDKL at the main k of uniformly random rankings of the gallery: the
    best any model can reach on it (finite-sample noise), per attribute and desired distribution."""
    if config.random_floor_queries < 1:
        return {}
    queries = [Query(text=f"random ranking {index}", concept="random") for index in range(config.random_floor_queries)]
    blocks = random_score_blocks(len(queries), len(gallery), config.seed, config.score_block_mb)
    result = fairness_from_blocks(blocks, gallery, queries, config, with_group_recall=False)
    main = str(result["main_k"])
    return {
        name: {want: {metric: by_k[main][metric]["mean"] for metric in FAIRNESS_METRICS}
               for want, by_k in entry["by_desired"].items()}
        for name, entry in result["attributes"].items()
    }
