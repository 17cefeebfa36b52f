"""What SFID and SPD share: attribute-labelled embeddings checked and split, and the *neutral value*,
the mean embedding of the samples whose attribute a classifier cannot tell.

SFID (Jung et al., NeurIPS 2024) fits a random forest to predict the attribute on one split (FairFace
train in the authors' code) and calls "low-confidence" the samples of another split (FairFace val)
whose highest predicted class probability is below a threshold t (0.7 for CLIP's towers); their mean
is the value that replaces the attribute's part of every embedding. SPD (Zhao et al., CVPR 2026)
reinserts the same low-confidence mean (its authors reuse SFID's low-confidence statistics), so both
methods take it from here. cf_hf has one labelled set, so it holds out a stratified fraction of it in
place of the second split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cf_hf.methods.clip_clip.estimator import check_labels
from cf_hf.methods.linear import MethodError, attribute_list

# SFID's released defaults: 100 trees; t = 0.7 for CLIP's image and text encoders.
DEFAULT_TREES = 100
DEFAULT_CONFIDENCE_THRESHOLD = 0.7
# The share of the labelled set held out to find the low-confidence samples (the authors use a
# second split: FairFace val is about 12% of FairFace train + val).
DEFAULT_HELD_OUT_FRACTION = 0.2


def unit_embeddings(embeddings: np.ndarray, owner: str = "embeddings") -> np.ndarray:
    """(n, d) embeddings as float64 rows of unit norm; a clear error for a bad shape, NaN/inf or a zero row."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    if embeddings.ndim != 2 or embeddings.shape[0] == 0 or embeddings.shape[1] == 0:
        raise MethodError(f"{owner} must be a non-empty (n, d) array, got shape {embeddings.shape}")
    if not np.isfinite(embeddings).all():
        raise MethodError(f"{owner} contain NaN or inf")
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    if (norms == 0).any():
        raise MethodError(f"{owner}: row {int(np.flatnonzero(norms[:, 0] == 0)[0])} is all zeros")
    return embeddings / norms


@dataclass
class HeldOutSplit:
    """Row indices of the part a classifier is fitted on and of the part held out from it."""

    fit: np.ndarray
    held_out: np.ndarray


def held_out_split(labels: np.ndarray, fraction: float, seed: int, attribute: str) -> HeldOutSplit:
    """A split stratified by attribute value: every value in both parts; a clear error when a value has too
    few samples for that."""
    from sklearn.model_selection import train_test_split

    if not 0 < fraction < 1:
        raise MethodError(f"held_out_fraction must be strictly between 0 and 1, got {fraction}")
    values, counts = np.unique(labels, return_counts=True)
    scarce = [str(value) for value, count in zip(values, counts) if count < 2]
    if scarce:
        raise MethodError(f"{attribute!r} value(s) {scarce} have a single sample: the classifier needs each value "
                          "both in the part it is fitted on and in the held-out part")
    held = max(int(round(fraction * len(labels))), len(values))
    if len(labels) - held < len(values):
        raise MethodError(f"{len(labels)} labelled samples are too few to hold out {fraction:g} of them and keep "
                          f"every {attribute!r} value in both parts")
    fit, held_out = train_test_split(np.arange(len(labels)), test_size=held, stratify=labels, random_state=seed)
    return HeldOutSplit(fit=np.sort(fit), held_out=np.sort(held_out))


def fit_forest(embeddings: np.ndarray, labels: np.ndarray, n_trees: int = DEFAULT_TREES, seed: int = 0):
    """scikit-learn's `RandomForestClassifier` (`n_trees` trees, otherwise its defaults, as SFID's) fitted
    on (n, d) embeddings and their (n,) labels."""
    from sklearn.ensemble import RandomForestClassifier

    if n_trees < 1:
        raise MethodError(f"the forest needs at least one tree, got n_trees={n_trees}")
    return RandomForestClassifier(n_estimators=n_trees, random_state=seed, n_jobs=1).fit(embeddings, labels)


@dataclass
class NeutralValue:
    """The mean (d,) of the held-out samples the classifier is least sure about, and how many there were."""

    mean: np.ndarray
    count: int
    held_out: int
    threshold: float


def low_confidence_mean(classifier, embeddings: np.ndarray, threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
                        ) -> NeutralValue:
    """Mean of the (n, d) `embeddings` whose highest class probability under `classifier` is below
    `threshold` (SFID's low-confidence samples); a clear error when there are none."""
    if not 0 < threshold <= 1:
        raise MethodError(f"confidence_threshold must be in (0, 1], got {threshold}")
    confidence = classifier.predict_proba(embeddings).max(axis=1)
    low = confidence < threshold
    if not low.any():
        raise MethodError(f"no held-out sample has a confidence below {threshold:g} (the lowest is "
                          f"{confidence.min():.3f}): raise confidence_threshold or give more varied samples")
    return NeutralValue(mean=embeddings[low].mean(axis=0), count=int(low.sum()), held_out=len(embeddings),
                        threshold=float(threshold))


@dataclass
class LabelledEmbeddings:
    """Unit-norm embeddings (n, d) with their checked (n,) attribute labels, split for a fit."""

    embeddings: np.ndarray
    labels: np.ndarray
    split: HeldOutSplit
    attribute: str

    @property
    def fit_part(self) -> tuple[np.ndarray, np.ndarray]:
        return self.embeddings[self.split.fit], self.labels[self.split.fit]

    @property
    def held_out_part(self) -> np.ndarray:
        return self.embeddings[self.split.held_out]


def labelled_embeddings(embeddings: np.ndarray, labels: Sequence, attribute: str, held_out_fraction: float,
                        seed: int, owner: str) -> LabelledEmbeddings:
    """Check and normalize `embeddings` (n, d) and their labels (two values at least, none missing), and
    split them."""
    if not attribute:
        raise MethodError("name the attribute the labels belong to (attribute=...)")
    embeddings = unit_embeddings(embeddings, owner)
    labels = check_labels(labels, len(embeddings), attribute)
    return LabelledEmbeddings(embeddings=embeddings, labels=labels, attribute=attribute,
                              split=held_out_split(labels, held_out_fraction, seed, attribute))


def attribute_label_sets(labels, attribute, method: str) -> dict:
    """attribute -> (n,) labels: one attribute's `labels` (a sequence) under the name `attribute`, or a
    mapping attribute -> labels of several attributes (removed jointly; `attribute` is then ignored)."""
    if isinstance(labels, Mapping):
        return {name: labels[name] for name in attribute_list(list(labels), method)}
    names = attribute_list(attribute, method)
    if len(names) != 1:
        raise MethodError(f"{method}: several attributes {names} need their labels as a mapping attribute -> labels")
    return {names[0]: labels}


def labelled_towers(image_embeddings: np.ndarray, labels, attribute, text_embeddings: np.ndarray | None,
                    text_labels, held_out_fraction: float, seed: int, method: str):
    """The labelled sets of a fit on both towers: (names, images, texts), `images`/`texts` attribute ->
    `LabelledEmbeddings` (checked, normalized, split); `texts` None when no text set is given (the
    texts then get the image fit). Labels as in `attribute_label_sets`."""
    if (text_embeddings is None) != (text_labels is None):
        raise MethodError("give text_embeddings and text_labels together (or neither: the texts get the image fit)")
    image_labels = attribute_label_sets(labels, attribute, method)
    names = list(image_labels)
    images = {name: labelled_embeddings(image_embeddings, values, name, held_out_fraction, seed, "image embeddings")
              for name, values in image_labels.items()}
    if text_embeddings is None:
        return names, images, None
    label_sets = attribute_label_sets(text_labels, attribute, method)
    if list(label_sets) != names:
        raise MethodError(f"{method}: text labels are for {list(label_sets)}, image labels for {names}")
    texts = {name: labelled_embeddings(text_embeddings, values, name, held_out_fraction, seed, "text embeddings")
             for name, values in label_sets.items()}
    text_dimension, image_dimension = (part[names[0]].embeddings.shape[1] for part in (texts, images))
    if text_dimension != image_dimension:
        raise MethodError(f"text embeddings have {text_dimension} dimensions, image embeddings {image_dimension}")
    return names, images, texts


def per_attribute(names: Sequence[str], fits: Sequence, value):
    """`value(fit)` of the one attribute's fit, or attribute -> `value(fit)` for several (a record's shape)."""
    return value(fits[0]) if len(names) == 1 else {name: value(fit) for name, fit in zip(names, fits)}


def fits_record(names: Sequence[str], image_fits: Sequence, text_fits: Sequence, own_text_fit: bool) -> dict:
    """What a fit on both towers records: the attribute(s), and each tower's fit (`.record`)."""
    record = {"attribute": names[0]} if len(names) == 1 else {"attributes": list(names)}
    record["image"] = per_attribute(names, image_fits, lambda fit: fit.record)
    record["text"] = per_attribute(names, text_fits, lambda fit: fit.record) if own_text_fit else "the image fit"
    return record


def gallery_label_sets(gallery, attribute, method: str) -> dict:
    """attribute -> (n_images,) labels of one attribute or several (`attribute`: a name or a list) in an
    attribute-labelled gallery; a clear error naming the problem otherwise."""
    return {name: gallery_labels(gallery, name, method) for name in attribute_list(attribute, method)}


def gallery_labels(gallery, attribute: str, method: str) -> list:
    """The (n_images,) labels of `attribute` in an attribute-labelled gallery
    (`cf_hf.evaluation.AttributeGallery`); a clear error naming the gallery's attributes otherwise."""
    if not isinstance(attribute, str) or not attribute:
        raise MethodError(f"{method}: name one attribute to remove (got {attribute!r})")
    if attribute not in gallery.attributes:
        raise MethodError(f"{method}: the gallery {gallery.name!r} has no attribute {attribute!r}; "
                          f"it has {sorted(gallery.attributes)}")
    return list(gallery.attributes[attribute])


def save_transforms(original, transforms, output_dir, fit_seconds: float) -> list:
    """Save each fitted `EmbeddingTransform` with `original` under `output_dir/<fit name>`
    (`cf_hf.methods.transformed.save_transformed`) as `MethodCheckpoint`s; every folder is checked before
    any is written."""
    from pathlib import Path

    from cf_hf.methods.checkpoints import MethodCheckpoint
    from cf_hf.methods.linear import check_output_folder, load_clip
    from cf_hf.methods.transformed import save_transformed

    output_dir = Path(output_dir)
    for transform in transforms:
        check_output_folder(output_dir / transform.name)
    loaded = load_clip(original)  # once for the whole sweep
    checkpoints = []
    for transform in transforms:
        path = save_transformed(original, transform, output_dir / transform.name, loaded=loaded)
        checkpoints.append(MethodCheckpoint(name=transform.name, method=transform.method, path=Path(path),
                                            settings=dict(transform.settings), swept=transform.swept[0],
                                            fit_seconds=fit_seconds))
    return checkpoints
