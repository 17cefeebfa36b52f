"""Evaluation harness: fairness retrieval on attribute-labelled galleries, image-text retrieval,
zero-shot classification, for one model or an α sweep, with a report and plots.

    from cf_hf.evaluation import evaluate_models, load_fairface, load_karpathy, write_report

    results = evaluate_models(
        {"original": "openai/clip-vit-base-patch32", "cf": "./cf-clip"},
        fairness=load_fairface("~/data/fairface"),
        retrieval=load_karpathy("dataset_flickr30k.json", "~/data/flickr30k"),
    )
    write_report(results, "outputs/eval")

Modules: `sets` (the set dataclasses), `galleries` (loaders of the on-disk formats, one module each),
`embedding` (batched, cached embedding engine), `queries` (fairness queries: templates x concepts),
`fairness` (fairness retrieval over bounded score blocks, the random floor), `downstream` (image-text
retrieval, zero-shot classification), `protocol` (`EvaluationConfig`, `evaluate_models`), `results`
(the results.json schema: `load_results`, `write_results`), `report` (report.md, plots); the command
is `cf-hf evaluate` (`cf_hf.cli.evaluate`). Imports are lazy: torch loads only when a model is
embedded.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "AttributeGallery": "sets", "RetrievalSet": "sets", "ZeroShotSet": "sets", "Query": "sets",
    "DatasetImages": "sets", "fingerprint_images": "sets", "protocol_defaults": "sets",
    "load_fairface": "galleries.fairface", "load_utkface": "galleries.utkface", "load_pata": "galleries.pata",
    "load_karpathy": "galleries.karpathy", "load_imagenet_folder": "galleries.imagenet",
    "load_hf_gallery": "galleries.hf", "load_hf_retrieval": "galleries.hf", "load_hf_zero_shot": "galleries.hf",
    "EmbeddingConfig": "embedding", "EmbeddingEngine": "embedding", "EmbeddingCache": "cache",
    "EvaluationConfig": "protocol", "evaluate_models": "protocol", "evaluate_engine": "protocol",
    "FairnessConfig": "fairness", "evaluate_fairness": "fairness", "random_floor": "fairness",
    "build_queries": "queries", "evaluate_retrieval": "downstream", "evaluate_zero_shot": "downstream",
    "Results": "results", "ModelResults": "results", "ResultsError": "results", "load_results": "results",
    "parse_results": "results", "write_results": "results",
    "write_report": "report",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # the names as a type checker or the API reference (mkdocstrings) sees them
    from cf_hf.evaluation.cache import EmbeddingCache
    from cf_hf.evaluation.downstream import evaluate_retrieval, evaluate_zero_shot
    from cf_hf.evaluation.embedding import EmbeddingConfig, EmbeddingEngine
    from cf_hf.evaluation.fairness import FairnessConfig, evaluate_fairness, random_floor
    from cf_hf.evaluation.galleries.fairface import load_fairface
    from cf_hf.evaluation.galleries.hf import load_hf_gallery, load_hf_retrieval, load_hf_zero_shot
    from cf_hf.evaluation.galleries.imagenet import load_imagenet_folder
    from cf_hf.evaluation.galleries.karpathy import load_karpathy
    from cf_hf.evaluation.galleries.pata import load_pata
    from cf_hf.evaluation.galleries.utkface import load_utkface
    from cf_hf.evaluation.protocol import EvaluationConfig, evaluate_engine, evaluate_models
    from cf_hf.evaluation.queries import build_queries
    from cf_hf.evaluation.report import write_report
    from cf_hf.evaluation.results import (
        ModelResults,
        Results,
        ResultsError,
        load_results,
        parse_results,
        write_results,
    )
    from cf_hf.evaluation.sets import (
        AttributeGallery,
        DatasetImages,
        Query,
        RetrievalSet,
        ZeroShotSet,
        fingerprint_images,
        protocol_defaults,
    )


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cf_hf.evaluation' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
