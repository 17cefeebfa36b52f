"""The zero-shot attribute classifier: which appearance a person crop shows, read by a CLIP model
against the attribute grid's prompts.

`CLIPAttributeClassifier` reads through a `CLIPEmbedder` its caller builds (the `cf-hf verify`
command: an `EmbeddingEngine` of `--classifier_model`); any callable with the `AttributeClassifier`
shape can stand in (the professions world's attribute reader does).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from cf_hf.generation.verification.scores import grid_attribute

DEFAULT_CLASSIFIER_MODEL = "openai/clip-vit-base-patch32"


@runtime_checkable
class AttributeClassifier(Protocol):
    def __call__(self, crops: Sequence[Image.Image], concepts: Sequence[str]) -> dict[str, np.ndarray]:
        """Per attribute name, (N, V) probabilities over that attribute's values (grid order)."""


@runtime_checkable
class CLIPEmbedder(Protocol):
    """Unit-norm image and text embeddings of one CLIP-like model, e.g.
    the evaluation package's `EmbeddingEngine`. Where it has `model.logit_scale`, that sets the
    classifier's softmax temperature (100 otherwise)."""

    def embed_images(self, images: list[Image.Image]) -> np.ndarray:
        """(N, D) embeddings of `images`."""

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """(N, D) embeddings of `texts`."""


def attribute_prompts(grid, attribute: str, concept: str) -> list[str]:
    """The zero-shot prompts of `attribute`'s values: the grid's appearance prompt with only this
    attribute's phrase (the other placeholders empty), e.g. "a photo of a woman working as a doctor"."""
    from cf_hf.concepts import fix_articles

    prompts = []
    for value in grid_attribute(grid, attribute).values:
        filled = {name: "" for name in grid.names}
        filled[attribute] = grid_attribute(grid, attribute).phrase(value)
        text = grid.prompt_template.format(concept=concept, **filled)
        prompts.append(fix_articles(" ".join(text.split()).replace(" ,", ",")))
    return prompts


class CLIPAttributeClassifier:
    """Zero-shot attribute probabilities and image embeddings from a CLIP model, read through the
    `CLIPEmbedder` that `load_embedder()` returns (called on first use, so that a fully resumed
    verification loads no model). `model_id` and `dtype` are the provenance it records: they key
    the score cache, so they must name what `load_embedder` loads."""

    def __init__(self, grid, load_embedder: Callable[[], CLIPEmbedder], *, model_id: str, dtype: str = "float32"):
        self.grid = grid
        self.model_id = str(model_id)
        self.dtype = dtype
        self._load_embedder = load_embedder
        self._embedder: CLIPEmbedder | None = None
        self._text: dict[tuple[str, str], np.ndarray] = {}

    @property
    def provenance(self) -> dict[str, str]:
        return {"model_id": self.model_id, "dtype": self.dtype}

    @property
    def embedder(self) -> CLIPEmbedder:
        if self._embedder is None:
            self._embedder = self._load_embedder()
        return self._embedder

    def _text_embeddings(self, attribute: str, concept: str) -> np.ndarray:
        key = (attribute, concept)
        if key not in self._text:
            self._text[key] = self.embedder.embed_texts(attribute_prompts(self.grid, attribute, concept))
        return self._text[key]

    def embed(self, crops: Sequence[Image.Image]) -> np.ndarray:
        return np.asarray(self.embedder.embed_images(list(crops)), dtype=np.float32)

    def __call__(self, crops: Sequence[Image.Image], concepts: Sequence[str]) -> dict[str, np.ndarray]:
        return self.classify(self.embed(crops), concepts)

    def classify(self, embeddings: np.ndarray, concepts: Sequence[str]) -> dict[str, np.ndarray]:
        """Probabilities from image embeddings already computed (softmax of the scaled cosines)."""
        model = getattr(self.embedder, "model", None)
        scale = float(model.logit_scale.detach().exp()) if hasattr(model, "logit_scale") else 100.0
        probabilities = {}
        for attribute in self.grid.names:
            logits = np.stack([
                scale * self._text_embeddings(attribute, concept) @ embedding
                for embedding, concept in zip(embeddings, concepts)
            ])  # fmt: skip
            logits -= logits.max(axis=1, keepdims=True)
            exp = np.exp(logits)
            probabilities[attribute] = exp / exp.sum(axis=1, keepdims=True)
        return probabilities
