"""SPD fitted from a checkpoint and an attribute-labelled gallery: saved checkpoints, one per number of axes."""

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
from cf_hf.methods.spd.estimator import DEFAULT_AXES, DEFAULT_INVERSE_REGULARIZATION, spd_transforms


def spd_gallery_transforms(original: str | Path, gallery, attribute: str | Sequence[str], axes: Sequence[int] = DEFAULT_AXES,
                           confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD, n_trees: int = DEFAULT_TREES,
                           held_out_fraction: float = DEFAULT_HELD_OUT_FRACTION,
                           inverse_regularization: float = DEFAULT_INVERSE_REGULARIZATION, seed: int = 0,
                           embedding_config=None) -> list[EmbeddingTransform]:
    """SPD fitted on `original`'s image embeddings of an attribute-labelled gallery
    (`cf_hf.evaluation.AttributeGallery`, e.g. FairFace train): one transform per number of axes. `attribute`:
    one name, or several removed jointly (each attribute's axes, their union replaced)."""
    labels = gallery_label_sets(gallery, attribute, "spd")
    engine = embedding_engine(original, embedding_config)
    embeddings = engine.embed_images(gallery.images, gallery.fingerprint)
    return spd_transforms(embeddings, labels, axes, attribute=attribute, confidence_threshold=confidence_threshold,
                          n_trees=n_trees, held_out_fraction=held_out_fraction,
                          inverse_regularization=inverse_regularization, seed=seed,
                          fitted_on={"gallery": gallery.name, "source": gallery.source, "model": str(original)})


def fit_spd(original: str | Path, output_dir: str | Path, gallery, attribute: str | Sequence[str], axes: Sequence[int] = DEFAULT_AXES,
            confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD, n_trees: int = DEFAULT_TREES,
            held_out_fraction: float = DEFAULT_HELD_OUT_FRACTION,
            inverse_regularization: float = DEFAULT_INVERSE_REGULARIZATION, seed: int = 0,
            embedding_config=None) -> list[MethodCheckpoint]:
    """SPD fitted on an attribute-labelled gallery and saved with `original`: one checkpoint per number of
    axes (`output_dir/spd-axes=<k>`)."""
    start = time.perf_counter()
    transforms = spd_gallery_transforms(original, gallery, attribute, axes, confidence_threshold, n_trees,
                                        held_out_fraction, inverse_regularization, seed, embedding_config)
    return save_transforms(original, transforms, output_dir, time.perf_counter() - start)
