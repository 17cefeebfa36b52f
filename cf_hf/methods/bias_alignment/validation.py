"""The bias-alignment module's model selection: ABLE of the current heads on held-out rows.

The authors (`haoyusimon/VL_Debiasing`, train.py / eval_train.py) hold out 12.5% of FairFace train
(`labels.sample(frac=0.125, random_state=1)` after sorting by file), and every 2 epochs score ABLE =
harmonic mean of exp(−MaxSkew) (equal opportunity) of concept queries on those held-out faces and the
zero-shot top-1 accuracy on ImageNetV2; the best-ABLE heads are kept. CLIP is frozen, so everything
here is CLIP's cached embeddings passed through the heads: one evaluation is a few matrix products.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cf_hf import metrics
from cf_hf.methods.linear import MethodError

# The authors' share of FairFace train held out for model selection, and their draw's seed.
VALIDATION_FRACTION = 0.125
VALIDATION_SEED = 1


def validation_rows(n_rows: int, fraction: float = VALIDATION_FRACTION, seed: int = VALIDATION_SEED) -> np.ndarray:
    """(round(fraction · n_rows),) sorted row indices held out for validation.

    The draw is the one `pandas.DataFrame.sample(frac=fraction, random_state=seed)` makes (a
    `numpy.random.RandomState(seed)` choice without replacement): on FairFace's train CSV sorted by
    file it holds out the authors' rows.
    """
    if not 0.0 < fraction < 1.0:
        raise MethodError(f"validation_fraction={fraction} must be in (0, 1)")
    size = round(fraction * n_rows)
    if size < 1 or size >= n_rows:
        raise MethodError(f"validation_fraction={fraction} of {n_rows} rows leaves {size} held out and "
                          f"{n_rows - size} to train on: both need at least one row")
    return np.sort(np.random.RandomState(seed).choice(n_rows, size=size, replace=False))


def split_validation(gallery, fraction: float = VALIDATION_FRACTION):
    """(training gallery, held-out gallery): `validation_rows` of `gallery`'s rows sorted by image
    (FairFace: by file, as the authors sort their CSV) held out."""
    from cf_hf.evaluation.sets import AttributeGallery

    order = sorted(range(len(gallery)), key=lambda row: str(gallery.images[row]))
    held_out = set(int(order[row]) for row in validation_rows(len(order), fraction))
    parts = {}
    for name, keep in (("train", lambda row: row not in held_out), ("validation", lambda row: row in held_out)):
        rows = [row for row in range(len(gallery)) if keep(row)]
        parts[name] = AttributeGallery(
            images=[gallery.images[row] for row in rows],
            attributes={attribute: [labels[row] for row in rows] for attribute, labels in gallery.attributes.items()},
            name=f"{gallery.name}-{name}", source=gallery.source)
    return parts["train"], parts["validation"]


@dataclass
class BiasAlignmentValidation:
    """CLIP's original (unnormalized) embeddings of the held-out rows, the fairness queries and a
    zero-shot set: what `score` passes through the heads.

    Attributes:
        image: (n, d) held-out images.
        labels: attribute -> (n,) labels of the held-out images (the attributes being removed).
        query_text: (q, d) concept queries ("a photo of a doctor", ...).
        k: MaxSkew cut-off (at most n).
        zero_shot_image: (m, d) zero-shot images; zero_shot_labels: (m,) their class indices.
        class_text: (c, t, d) every class name in every prompt template.
    """

    image: np.ndarray
    labels: dict[str, np.ndarray]
    query_text: np.ndarray
    k: int
    zero_shot_image: np.ndarray
    zero_shot_labels: np.ndarray
    class_text: np.ndarray

    def __post_init__(self):
        if not 1 <= self.k <= len(self.image):
            raise MethodError(f"MaxSkew@{self.k} needs at least {self.k} held-out images, there are {len(self.image)}")
        if self.class_text.ndim != 3:
            raise MethodError(f"class_text must be (classes, templates, d), got shape {self.class_text.shape}")

    @torch.no_grad()
    def score(self, heads) -> dict[str, float]:
        """{"max_skew", "zero_shot_accuracy", "able"} of `heads` (`BiasAlignmentHeads`): MaxSkew@k the
        mean over queries (equal opportunity, Berg et al.'s convention) and over the attributes removed."""
        device = next(heads.parameters()).device

        def debiased(array: np.ndarray, tower: str) -> np.ndarray:
            features = torch.as_tensor(np.asarray(array, np.float32), device=device)
            features = heads.debias_image(features) if tower == "image" else heads.debias_text(features)
            return F.normalize(features, dim=-1).cpu().numpy()

        scores = debiased(self.query_text, "text") @ debiased(self.image, "image").T
        max_skew = float(np.mean([metrics.max_skew(scores, labels, self.k).mean() for labels in self.labels.values()]))
        classes, templates, dimension = self.class_text.shape
        class_text = debiased(self.class_text.reshape(-1, dimension), "text").reshape(classes, templates, dimension)
        class_embeddings = class_text.mean(axis=1)
        class_embeddings /= np.linalg.norm(class_embeddings, axis=1, keepdims=True)
        logits = debiased(self.zero_shot_image, "image") @ class_embeddings.T
        accuracy = float(np.mean(logits.argmax(axis=1) == self.zero_shot_labels))
        return {"max_skew": max_skew, "zero_shot_accuracy": accuracy, "able": metrics.able(max_skew, accuracy)}


def validation_data(engine, gallery, attributes: Sequence[str], zero_shot, fairness_config=None) -> BiasAlignmentValidation:
    """The held-out rows embedded by `engine` (the original CLIP; unnormalized, cached): `gallery` (the
    held-out labelled images), the queries of `fairness_config` (cf_hf's defaults when None: templates ×
    concepts), and `zero_shot` (a `ZeroShotSet`, e.g. ImageNetV2 as the authors)."""
    from cf_hf.evaluation.fairness import FairnessConfig
    from cf_hf.evaluation.queries import gallery_queries
    from cf_hf.evaluation.sets import fill_template, protocol_defaults

    fairness_config = fairness_config or FairnessConfig()
    queries = gallery_queries(gallery, fairness_config)
    templates = zero_shot.templates if zero_shot.templates is not None else protocol_defaults()["zero_shot_templates"]
    texts = [fill_template(template, name) for name in zero_shot.class_names for template in templates]
    class_text = engine.embed_texts(texts, normalize=False).reshape(len(zero_shot.class_names), len(templates), -1)
    return BiasAlignmentValidation(
        image=np.asarray(engine.embed_images(gallery.images, gallery.fingerprint, normalize=False), np.float32),
        labels={name: np.asarray([str(label) for label in gallery.attributes[name]]) for name in attributes},
        query_text=np.asarray(engine.embed_texts([query.text for query in queries], normalize=False), np.float32),
        k=min(fairness_config.ks[0], len(gallery)),
        zero_shot_image=np.asarray(engine.embed_images(zero_shot.images, zero_shot.fingerprint, normalize=False),
                                   np.float32),
        zero_shot_labels=np.asarray(zero_shot.labels, np.int64),
        class_text=np.asarray(class_text, np.float32))
