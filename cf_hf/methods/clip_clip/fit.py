"""CLIP-clip fitted from a checkpoint and an attribute-labelled gallery: folded checkpoints, one per `keep`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from cf_hf.methods.checkpoints import MethodCheckpoint, embedding_engine, save_linear_fits
from cf_hf.methods.clip_clip.estimator import DEFAULT_ESTIMATOR, ESTIMATORS, HISTOGRAM, clip_clip_maps
from cf_hf.methods.linear import MethodError


def fit_clip_clip(original: str | Path, output_dir: str | Path, gallery, attribute: str | Sequence[str],
                  keep: Sequence[int], seed: int = 0, embedding_config=None,
                  estimator: str = DEFAULT_ESTIMATOR) -> list[MethodCheckpoint]:
    """CLIP-clip fitted on an attribute-labelled gallery (`cf_hf.evaluation.AttributeGallery`,
    e.g. FairFace train): one checkpoint per number of kept dimensions. Several attributes: the
    dimensions are ranked by their information summed over them.

    `estimator`: `histogram` (the authors', on the unnormalized image features) or `knn`
    (scikit-learn's k-NN estimator, on the unit-norm embeddings as cf_hf used it before)."""
    if estimator not in ESTIMATORS:
        raise MethodError(f"unknown CLIP-clip estimator {estimator!r}: choose one of {list(ESTIMATORS)}")
    attributes = [attribute] if isinstance(attribute, str) else list(attribute)
    missing = [name for name in attributes if name not in gallery.attributes]
    if missing or not attributes:
        raise MethodError(f"clip_clip: the gallery {gallery.name!r} has no attribute {', '.join(map(repr, missing))}; "
                          f"it has {sorted(gallery.attributes)}")
    start = time.perf_counter()
    engine = embedding_engine(original, embedding_config)
    normalized = estimator != HISTOGRAM
    embeddings = engine.embed_images(gallery.images, gallery.fingerprint, normalize=normalized)
    fits = clip_clip_maps(embeddings, {name: gallery.attributes[name] for name in attributes}, keep,
                          seed=seed, estimator=estimator,
                          fitted_on={"gallery": gallery.name, "source": gallery.source, "model": str(original),
                                     "image_features": "unit-norm" if normalized else "unnormalized"})
    return save_linear_fits(original, fits, output_dir, time.perf_counter() - start)
