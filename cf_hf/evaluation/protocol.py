"""The evaluation protocol: fairness retrieval, image-text retrieval and zero-shot classification,
for one model or many (an α sweep), into one results dictionary.

Fairness (per gallery, per sensitive attribute):
  queries = templates x concepts (or the gallery's own captions, e.g. PATA); each query ranks the
  whole gallery by cosine similarity; MaxSkew@k, MinSkew@k and NDKL@k (`cf_hf.metrics`) at every
  k below the gallery size (`fairness_ks`) for every desired distribution; aggregated as the mean over
  queries, the worst query and the mean per concept; plus worst-group recall@k when the gallery
  labels each image with a concept. The (queries x gallery) score matrix is built in blocks of
  queries, each block from gallery chunks, so memory is bounded whatever the gallery size; every
  metric is computed per query, so the results do not depend on the block sizes.

Downstream: text->image and image->text Recall@K (`recall_at_5` is text->image R@5), zero-shot
top-k accuracy with a prompt-template ensemble (`zero_shot_accuracy` is top-1). All accuracies
and recalls are fractions in [0, 1].
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cf_hf import metrics

from .embedding import EmbeddingCache, EmbeddingConfig, EmbeddingEngine
from .results import FAIRNESS_METRICS, RESERVED_KEYS, SCHEMA_VERSION
from .sets import (
    AttributeGallery,
    Query,
    RetrievalSet,
    ZeroShotSet,
    check_templates,
    fill_template,
    protocol_defaults,
)

# The worst query: highest MaxSkew and NDKL, lowest (most negative) MinSkew.
WORST = {"max_skew": max, "min_skew": min, "ndkl": max}
HEADLINE_RECALL_K = 5
# (queries, images) of the fixed tiles scores are computed in; see `score_blocks`.
SCORE_TILE = (16, 4096)
UNITS = "fraction"


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


@dataclass
class EvaluationConfig:
    """Everything that decides the numbers: the fairness protocol, downstream cut-offs, embedding."""

    fairness: FairnessConfig = field(default_factory=FairnessConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    recall_ks: tuple[int, ...] = (1, 5, 10)
    zero_shot_top_k: tuple[int, ...] = (1, 5)


# ---------------------------------------------------------------------------------------------
# Queries


def build_queries(concepts: Sequence | None, templates: Sequence[str]) -> list[Query]:
    """Templates x concepts. A concept is a name or an object with `name` and `article`
    (default: the shipped professions, `cf_hf.concepts.load_concepts()`)."""
    if concepts is None:
        from cf_hf.concepts import load_concepts

        concepts = load_concepts()
    queries = []
    for concept in concepts:
        name = getattr(concept, "name", concept)
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"concepts: expected non-empty names, got {concept!r}")
        article = getattr(concept, "article", None)
        queries += [Query(text=fill_template(template, name, article), concept=name, template=template)
                    for template in templates]
    if not queries:
        raise ValueError("no fairness queries: concepts is empty")
    return queries


def gallery_queries(gallery: AttributeGallery, config: FairnessConfig) -> list[Query]:
    """The gallery's own queries (PATA captions) or the protocol's templates x concepts."""
    return list(gallery.queries) if gallery.queries is not None else build_queries(config.concepts, config.templates)


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


# ---------------------------------------------------------------------------------------------
# Downstream


def evaluate_retrieval(text_embeddings: np.ndarray, image_embeddings: np.ndarray, retrieval: RetrievalSet,
                       ks: Sequence[int]) -> dict:
    """Recall@K both ways. `text_embeddings`: (n_captions, dim) in caption order (image by image)."""
    owners = np.repeat(np.arange(len(retrieval)), [len(captions) for captions in retrieval.captions])
    # float64 from the start: the metric works in float64, so this is the only (n_captions, n_images) copy.
    similarity = np.asarray(text_embeddings, np.float64) @ np.asarray(image_embeddings, np.float64).T
    recall = metrics.recall_at_k(similarity, owners, [k for k in ks if k <= len(retrieval)])
    return {
        "n_images": len(retrieval),
        "n_captions": int(owners.size),
        "text_to_image": {str(k): value for k, value in recall["text_to_image"].items()},
        "image_to_text": {str(k): value for k, value in recall["image_to_text"].items()},
    }


def class_embeddings(engine: EmbeddingEngine, class_names: Sequence[str], templates: Sequence[str]) -> np.ndarray:
    """Prompt-ensemble class embeddings (n_classes, dim): the mean of the unit-norm template
    embeddings of each class, renormalised (CLIP's zero-shot protocol)."""
    texts = [fill_template(template, name) for name in class_names for template in templates]
    embeddings = engine.embed_texts(texts).reshape(len(class_names), len(templates), -1).mean(axis=1)
    return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)


def evaluate_zero_shot(class_embeddings_: np.ndarray, image_embeddings: np.ndarray, zero_shot: ZeroShotSet,
                       top_k: Sequence[int], chunk: int = 8192) -> dict:
    """Top-k accuracy, per-class accuracy, per-image predictions, and group accuracies per attribute."""
    labels = np.asarray(zero_shot.labels)
    top_k = [k for k in top_k if k <= len(zero_shot.class_names)]
    correct = dict.fromkeys(top_k, 0)
    predictions = np.empty(len(labels), dtype=np.int64)
    classes = np.asarray(class_embeddings_, np.float32)
    for start in range(0, len(labels), chunk):
        stop = min(start + chunk, len(labels))
        logits = np.asarray(image_embeddings[start:stop], np.float32) @ classes.T
        accuracy = metrics.zero_shot_accuracy(logits, labels[start:stop], top_k)
        for k in top_k:
            correct[k] += round(accuracy[k] * (stop - start))
        predictions[start:stop] = logits.argmax(axis=1)  # first maximum: the metrics' tie rule
    hits = predictions == labels
    per_class = np.bincount(labels, weights=hits, minlength=len(zero_shot.class_names))
    sizes = np.bincount(labels, minlength=len(zero_shot.class_names))
    result = {
        "n_images": len(labels),
        "n_classes": len(zero_shot.class_names),
        "templates": list(zero_shot.templates),
        "top_k": {str(k): correct[k] / len(labels) for k in top_k},
        "per_class": {name: float(per_class[index] / sizes[index])
                      for index, name in enumerate(zero_shot.class_names) if sizes[index]},
        "predictions": predictions.tolist(),
    }
    if zero_shot.attributes:
        result["groups"] = {}
        for name, values in zero_shot.attributes.items():
            values = np.asarray(values).astype(str)
            groups = metrics.group_accuracies(predictions, labels, values)
            result["groups"][name] = {
                "worst_group_accuracy": metrics.worst_group_accuracy(predictions, labels, values),
                "balanced_accuracy": metrics.balanced_accuracy(predictions, labels, values),
                "per_value": {str(value): float(hits[values == value].mean()) for value in np.unique(values)},
                "per_group": {f"{zero_shot.class_names[int(label)]}|{value}": accuracy
                              for (label, value), accuracy in groups.items()},
            }
    return result


# ---------------------------------------------------------------------------------------------
# Models


def _named(sets, kind) -> dict:
    if sets is None:
        return {}
    if isinstance(sets, (AttributeGallery, RetrievalSet, ZeroShotSet)):
        sets = [sets]
    if isinstance(sets, Mapping):
        return dict(sets)
    named = {}
    for item in sets:
        if not isinstance(item, kind):
            raise TypeError(f"expected {kind.__name__} objects, got {type(item).__name__}")
        if item.name in named:
            raise ValueError(f"two {kind.__name__}s are named {item.name!r}: give them distinct names")
        named[item.name] = item
    return named


def evaluate_engine(engine: EmbeddingEngine, fairness: Mapping[str, AttributeGallery],
                    retrieval: Mapping[str, RetrievalSet], zero_shot: Mapping[str, ZeroShotSet],
                    config: EvaluationConfig) -> dict:
    """Every configured evaluation for one model; the model entry of results.json."""
    started = time.perf_counter()
    entry: dict = {"model": {"name": engine.name, "image_fingerprint": engine.image_fingerprint,
                             "text_fingerprint": engine.text_fingerprint}}
    entry["fairness"] = {}
    for name, gallery in fairness.items():
        queries = gallery_queries(gallery, config.fairness)
        text = engine.embed_texts([query.text for query in queries])
        images = engine.embed_images(gallery.images, gallery.fingerprint)
        entry["fairness"][name] = evaluate_fairness(text, images, gallery, queries, config.fairness)
    entry["retrieval"] = {}
    for name, dataset in retrieval.items():
        text = engine.embed_texts([caption for captions in dataset.captions for caption in captions])
        images = engine.embed_images(dataset.images, dataset.fingerprint)
        entry["retrieval"][name] = evaluate_retrieval(text, images, dataset, config.recall_ks)
    entry["zero_shot"] = {}
    for name, dataset in zero_shot.items():
        classes = class_embeddings(engine, dataset.class_names, dataset.templates)
        images = engine.embed_images(dataset.images, dataset.fingerprint)
        entry["zero_shot"][name] = evaluate_zero_shot(classes, images, dataset, config.zero_shot_top_k)
    _headline(entry, config)
    entry["model"]["seconds"] = round(time.perf_counter() - started, 3)
    return entry


def _headline(entry: dict, config: EvaluationConfig) -> None:
    """The flat numbers other tools read (`cf_hf.evaluation.results`): per attribute (first gallery,
    first desired distribution, main k, recorded as `fairness_k`) the mean MaxSkew/MinSkew/NDKL; zero_shot_accuracy (top-1) and
    recall_at_5 (text->image) of the first zero-shot / retrieval set; ABLE per attribute."""
    want = config.fairness.desired[0]
    if entry["fairness"]:
        first = next(iter(entry["fairness"].values()))
        main = str(first["main_k"])
        entry["fairness_k"] = first["main_k"]
        for name, result in first["attributes"].items():
            entry[name] = {metric: result["by_desired"][want][main][metric]["mean"] for metric in FAIRNESS_METRICS}
    if entry["zero_shot"]:
        entry["zero_shot_accuracy"] = next(iter(entry["zero_shot"].values()))["top_k"].get("1")
    if entry["retrieval"]:
        entry["recall_at_5"] = next(iter(entry["retrieval"].values()))["text_to_image"].get(str(HEADLINE_RECALL_K))
    accuracy = entry.get("zero_shot_accuracy")
    if accuracy is not None and entry["fairness"]:
        attributes = next(iter(entry["fairness"].values()))["attributes"]
        entry["able"] = {name: metrics.able(entry[name]["max_skew"], accuracy) for name in attributes}


def protocol_description(fairness: Mapping[str, AttributeGallery], retrieval: Mapping[str, RetrievalSet],
                         zero_shot: Mapping[str, ZeroShotSet], config: EvaluationConfig) -> dict:
    """What the numbers mean, recorded in results.json and written out in the report."""
    fair = config.fairness
    galleries = {}
    for name, gallery in fairness.items():
        queries = gallery_queries(gallery, fair)
        kept, left_out = fairness_ks(fair.ks, len(gallery), name)
        galleries[name] = {
            "source": gallery.source, "n_images": len(gallery), "fingerprint": gallery.fingerprint,
            "ks": kept, "left_out_ks": left_out,
            "attributes": {attr: dict(zip(*np.unique(np.asarray(labels).astype(str), return_counts=True)))
                           for attr, labels in gallery.attributes.items()},
            "queries": "gallery captions" if gallery.queries is not None else "templates x concepts",
            "n_queries": len(queries),
            "concepts": sorted({query.concept for query in queries}),
            "random_floor": random_floor(gallery, fair),
        }
        for attr in galleries[name]["attributes"]:
            galleries[name]["attributes"][attr] = {str(k): int(v) for k, v in galleries[name]["attributes"][attr].items()}
    return {
        "units": UNITS,
        "fairness": {
            "templates": fair.templates,
            "ks": fair.ks,
            "desired": fair.desired,
            "headline_desired": fair.desired[0],
            "convention": fair.convention,
            "aggregation": "mean over queries; worst query; mean per concept",
            "tie_rule": "equal scores rank the lower image index first",
            "galleries": galleries,
        },
        "retrieval": {name: {"source": dataset.source, "n_images": len(dataset), "recall_ks": list(config.recall_ks),
                             "headline": f"recall_at_5 = text-to-image R@{HEADLINE_RECALL_K}"}
                      for name, dataset in retrieval.items()},
        "zero_shot": {name: {"source": dataset.source, "n_images": len(dataset), "n_classes": len(dataset.class_names),
                             "n_templates": len(dataset.templates), "top_k": list(config.zero_shot_top_k),
                             "headline": "zero_shot_accuracy = top-1"}
                      for name, dataset in zero_shot.items()},
        "embedding": asdict(config.embedding),
    }


def evaluate_models(
    models: Mapping[str, str | Path | EmbeddingEngine],
    fairness: AttributeGallery | Sequence[AttributeGallery] | Mapping[str, AttributeGallery] | None = None,
    retrieval: RetrievalSet | Sequence[RetrievalSet] | Mapping[str, RetrievalSet] | None = None,
    zero_shot: ZeroShotSet | Sequence[ZeroShotSet] | Mapping[str, ZeroShotSet] | None = None,
    config: EvaluationConfig | None = None,
    alphas: Mapping[str, float] | None = None,
) -> dict:
    """Evaluate several models on the same sets: `{"schema_version", "models": {name: entry}, "protocol"}`,
    the results schema of `cf_hf.evaluation.results`.

    Args:
        models: name -> checkpoint folder / Hub id, or a ready `EmbeddingEngine` (for models held in
            memory). Checkpoints are loaded one at a time.
        fairness, retrieval, zero_shot: the evaluation sets (one, a list, or name -> set); the first
            of each kind gives the headline numbers.
        alphas: name -> α, recorded in the entries of an α sweep (and used by the plots).
    """
    config = config or EvaluationConfig()
    fairness, retrieval, zero_shot = (_named(fairness, AttributeGallery), _named(retrieval, RetrievalSet),
                                      _named(zero_shot, ZeroShotSet))
    if not models:
        raise ValueError("no models to evaluate")
    if not (fairness or retrieval or zero_shot):
        raise ValueError("nothing to evaluate: give at least one fairness gallery, retrieval set or zero-shot set")
    check_fairness_ks(fairness, config.fairness)
    cache = EmbeddingCache.shared(config.embedding.cache_dir, config.embedding.memory_cache_mb)
    hits, misses = cache.hits, cache.misses
    results: dict = {"schema_version": SCHEMA_VERSION, "models": {},
                     "protocol": protocol_description(fairness, retrieval, zero_shot, config)}
    for name, model in models.items():
        if isinstance(model, EmbeddingEngine):
            engine = model
            engine.name = name
        else:
            engine = EmbeddingEngine.from_pretrained(model, config.embedding, cache=cache, name=name)
        entry = evaluate_engine(engine, fairness, retrieval, zero_shot, config)
        if not isinstance(model, EmbeddingEngine):
            entry["model"]["path"] = str(model)
        if alphas and name in alphas:
            entry["alpha"] = float(alphas[name])
        results["models"][name] = entry
        del engine
    results["protocol"]["embedding_cache"] = {"hits": cache.hits - hits, "misses": cache.misses - misses}
    return results
