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

from cf_hf.generation.verification.prompts import ZeroShotPrompts, load_zero_shot_prompts
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


def attribute_prompts(grid, attribute: str, concept: str, prompts: ZeroShotPrompts | None = None) -> list[list[str]]:
    """Per value of `attribute` (grid order), its zero-shot prompts: the prompt file's templates with
    the value's words (default: the shipped `zero_shot_prompts.yaml`), e.g.
    [["a photo of a woman working as a doctor"], ["a photo of a man working as a doctor"]]."""
    prompts = prompts if prompts is not None else load_zero_shot_prompts(grid)
    return [prompts.prompts(attribute, value, concept) for value in grid_attribute(grid, attribute).values]


class CLIPAttributeClassifier:
    """Zero-shot attribute probabilities and image embeddings from a CLIP model, read through the
    `CLIPEmbedder` that `load_embedder()` returns (called on first use, so that a fully resumed
    verification loads no model). `model_id` and `dtype` are the provenance it records: they key
    the score cache, so they must name what `load_embedder` loads."""

    def __init__(self, grid, load_embedder: Callable[[], CLIPEmbedder], *, model_id: str, dtype: str = "float32",
                 prompts: ZeroShotPrompts | None = None):
        self.grid = grid
        self.prompts = prompts if prompts is not None else load_zero_shot_prompts(grid)
        self.model_id = str(model_id)
        self.dtype = dtype
        self._load_embedder = load_embedder
        self._embedder: CLIPEmbedder | None = None
        self._text: dict[tuple[str, str], np.ndarray] = {}

    @property
    def provenance(self) -> dict[str, str]:
        return {"model_id": self.model_id, "dtype": self.dtype, "prompts": self.prompts.source}

    @property
    def embedder(self) -> CLIPEmbedder:
        if self._embedder is None:
            self._embedder = self._load_embedder()
        return self._embedder

    def _text_embeddings(self, attribute: str, concept: str) -> np.ndarray:
        """(values, D): per value, the normalized mean of its prompts' unit-norm embeddings."""
        key = (attribute, concept)
        if key not in self._text:
            rows = [np.asarray(self.embedder.embed_texts(prompts), dtype=np.float64).mean(axis=0)
                    for prompts in attribute_prompts(self.grid, attribute, concept, self.prompts)]  # fmt: skip
            rows = np.stack(rows)
            self._text[key] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
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
