"""Downstream evaluation: text->image and image->text Recall@K, zero-shot top-k accuracy with a
prompt-template ensemble (and group accuracies when the images carry attributes). All accuracies
and recalls are fractions in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from cf_hf import metrics

from .sets import RetrievalSet, ZeroShotSet, fill_template

if TYPE_CHECKING:
    from .embedding import EmbeddingEngine


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
    embeddings of each class, renormalized (CLIP's zero-shot protocol)."""
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
