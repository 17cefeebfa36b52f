"""The evaluation protocol: fairness retrieval (`fairness`, on the queries of `queries`), image-text
retrieval and zero-shot classification (`downstream`), for one model or many (an α sweep), into one
results dictionary, with the description of what the numbers mean.

Headline numbers (`_headline`): per attribute the mean MaxSkew/MinSkew/NDKL of the first gallery
(first desired distribution, main k) and ABLE; `recall_at_5` (text->image R@5) and
`zero_shot_accuracy` (top-1) of the first retrieval / zero-shot set. All accuracies and recalls are
fractions in [0, 1].
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cf_hf import metrics
from cf_hf.interpolation.sweep import member_weights

from .downstream import class_embeddings, evaluate_retrieval, evaluate_zero_shot
from .embedding import EmbeddingCache, EmbeddingConfig, EmbeddingEngine
from .fairness import FairnessConfig, check_fairness_ks, evaluate_fairness, fairness_ks, random_floor
from .queries import gallery_queries
from .results import FAIRNESS_METRICS, SCHEMA_VERSION, SWEEP_MEMBER_FIELD
from .sets import AttributeGallery, RetrievalSet, ZeroShotSet

HEADLINE_RECALL_K = 5
UNITS = "fraction"


@dataclass
class EvaluationConfig:
    """Everything that decides the numbers: the fairness protocol, downstream cut-offs, embedding."""

    fairness: FairnessConfig = field(default_factory=FairnessConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    recall_ks: tuple[int, ...] = (1, 5, 10)
    zero_shot_top_k: tuple[int, ...] = (1, 5)


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
            # The path alone cannot say, once folders move, which weights were measured.
            weights = member_weights(model) if Path(str(model)).is_dir() else None
            if weights is not None:
                entry["model"][SWEEP_MEMBER_FIELD] = weights
        if alphas and name in alphas:
            entry["alpha"] = float(alphas[name])
        results["models"][name] = entry
        del engine
    results["protocol"]["embedding_cache"] = {"hits": cache.hits - hits, "misses": cache.misses - misses}
    return results
