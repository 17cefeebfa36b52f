"""SFID fitted from a checkpoint and an attribute-labelled gallery: saved checkpoints, one per m."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from cf_hf.methods.checkpoints import MethodCheckpoint, embedding_engine
from cf_hf.methods.embedding_transform import EmbeddingTransform
from cf_hf.methods.low_confidence import (
    DEFAULT_CONFIDENCE_THRESHOLD,
    DEFAULT_HELD_OUT_FRACTION,
    DEFAULT_TREES,
    gallery_label_sets,
    save_transforms,
)
from cf_hf.methods.sfid.estimator import DEFAULT_PRUNE_COUNTS, sfid_transforms


def sfid_gallery_transforms(original: str | Path, gallery, attribute: str | Sequence[str],
                            prune_counts: Sequence[int] = DEFAULT_PRUNE_COUNTS,
                            confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD, n_trees: int = DEFAULT_TREES,
                            held_out_fraction: float = DEFAULT_HELD_OUT_FRACTION, seed: int = 0,
                            embedding_config=None) -> list[EmbeddingTransform]:
    """SFID fitted on `original`'s image embeddings of an attribute-labelled gallery
    (`cf_hf.evaluation.AttributeGallery`, e.g. FairFace train): one transform per m. `attribute`: one
    name, or several removed jointly (m coordinates per attribute, their union replaced)."""
    labels = gallery_label_sets(gallery, attribute, "sfid")
    engine = embedding_engine(original, embedding_config)
    embeddings = engine.embed_images(gallery.images, gallery.fingerprint)
    return sfid_transforms(embeddings, labels, prune_counts, attribute=attribute,
                           confidence_threshold=confidence_threshold, n_trees=n_trees,
                           held_out_fraction=held_out_fraction, seed=seed,
                           fitted_on={"gallery": gallery.name, "source": gallery.source, "model": str(original)})


def fit_sfid(original: str | Path, output_dir: str | Path, gallery, attribute: str | Sequence[str],
             prune_counts: Sequence[int] = DEFAULT_PRUNE_COUNTS, confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
             n_trees: int = DEFAULT_TREES, held_out_fraction: float = DEFAULT_HELD_OUT_FRACTION, seed: int = 0,
             embedding_config=None) -> list[MethodCheckpoint]:
    """SFID fitted on an attribute-labelled gallery and saved with `original`: one checkpoint per m
    (`output_dir/sfid-m=<m>`)."""
    start = time.perf_counter()
    transforms = sfid_gallery_transforms(original, gallery, attribute, prune_counts, confidence_threshold, n_trees,
                                         held_out_fraction, seed, embedding_config)
    return save_transforms(original, transforms, output_dir, time.perf_counter() - start)
