"""What the explorer computes for one prompt: each model's top-k images of a gallery, the
attribute shares in that top-k against the gallery's, and the prompt's MaxSkew and NDKL.

This module depends on numpy and the library's metrics file alone, so that `cf-hf push explorer`
can copy it into a self-contained Space next to a copy of `cf_hf/metrics/fairness.py` (the copy
rewrites the one import line below). The gallery embeddings are whatever array the caller holds:
the evaluation harness's memory-mapped cache files for `cf-hf explore`, the Space's `.npy` files
there; a query is one matrix-vector product over them, never a re-embedding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cf_hf.metrics.fairness import encode_labels, fairness_metrics, top_k_indices

# Gallery rows multiplied at once: a float32 block of 8192 x 512 (16 MB) is small enough to stay in
# the CPU cache between its conversion from float16 and its product with the prompt.
SCORE_CHUNK_ROWS = 1 << 13


class ExplorerError(ValueError):
    """A query or a set-up the explorer cannot answer; the message says what to change."""


@dataclass
class ExplorerModel:
    """One model of the explorer.

    Attributes:
        image_embeddings: (n_images, dim) unit-norm embeddings of the gallery (any float dtype; a
            memory-mapped array is read in chunks).
        encode_text: prompt -> (dim,) unit-norm text embedding.
    """

    image_embeddings: np.ndarray
    encode_text: Callable[[str], np.ndarray]


@dataclass
class ModelAnswer:
    """One model's answer to a prompt.

    Attributes:
        model: the model's name.
        indices: (k,) gallery indices, best first (ties: the lower index first).
        scores: (k,) cosine similarities of those images to the prompt.
        labels: (k,) the attribute value of each retrieved image.
        top_k_shares: attribute value -> its share among the top-k (every value of the gallery).
        gallery_shares: attribute value -> its share of the whole gallery.
        max_skew, ndkl: the prompt's MaxSkew@k and NDKL@k for the attribute.
    """

    model: str
    indices: np.ndarray
    scores: np.ndarray
    labels: list[str]
    top_k_shares: dict[str, float]
    gallery_shares: dict[str, float]
    max_skew: float
    ndkl: float


class Explorer:
    """Top-k retrieval of several models over one attribute-labelled gallery.

    Args:
        models: name -> `ExplorerModel`; every model's embeddings cover the same gallery, in order.
        attributes: attribute name -> (n_images,) labels of the gallery.
        desired: the desired distribution of MaxSkew/NDKL ("equal_opportunity" or "demographic_parity").
        convention: "berg" (published numbers) or "exact" (see `cf_hf.metrics.fairness`).
        gallery_name: shown in the page.
    """

    def __init__(self, models: Mapping[str, ExplorerModel], attributes: Mapping[str, Sequence],
                 desired: str = "equal_opportunity", convention: str = "berg", gallery_name: str = "gallery"):
        if not models:
            raise ExplorerError("the explorer needs at least one model")
        if not attributes:
            raise ExplorerError(f"gallery {gallery_name!r} has no attribute labels: the explorer shows attribute shares")
        self.models = dict(models)
        self.gallery_name = gallery_name
        self.desired = desired
        self.convention = convention
        sizes = {name: int(model.image_embeddings.shape[0]) for name, model in self.models.items()}
        self.n_images = len(next(iter(attributes.values())))
        wrong = {name: size for name, size in sizes.items() if size != self.n_images}
        if wrong:
            raise ExplorerError(f"gallery {gallery_name!r} has {self.n_images} images but the embeddings of "
                                f"{wrong} have another number of rows: embed the same gallery for every model")
        # Attribute values are encoded once: a query then counts small integers.
        self._codes: dict[str, np.ndarray] = {}
        self._values: dict[str, list[str]] = {}
        self._gallery_shares: dict[str, dict[str, float]] = {}
        for name, labels in attributes.items():
            if len(labels) != self.n_images:
                raise ExplorerError(f"attribute {name!r} has {len(labels)} labels for {self.n_images} images")
            try:
                codes, distinct = encode_labels([str(label) for label in labels], self.n_images)
            except ValueError as error:
                raise ExplorerError(f"gallery {gallery_name!r}, attribute {name!r}: {error}") from None
            self._codes[name] = codes
            self._values[name] = [str(value) for value in distinct]
            counts = np.bincount(codes, minlength=len(distinct))
            self._gallery_shares[name] = {str(v): float(c) / self.n_images for v, c in zip(distinct, counts)}

    @property
    def attributes(self) -> list[str]:
        """The gallery's attribute names."""
        return list(self._codes)

    def values(self, attribute: str) -> list[str]:
        """The values of `attribute` in the gallery, sorted."""
        return list(self._values[self._check_attribute(attribute)])

    # -- checks: each names the bad input and what is allowed ------------------------------------

    def _check_attribute(self, attribute: str) -> str:
        if attribute not in self._codes:
            raise ExplorerError(f"gallery {self.gallery_name!r} has no attribute {attribute!r}: "
                                f"it has {', '.join(self._codes)}")
        return attribute

    def _check_models(self, names: Sequence[str] | None) -> list[str]:
        names = list(self.models) if names is None else [str(name) for name in names]
        if not names:
            raise ExplorerError(f"choose at least one model: {', '.join(self.models)}")
        unknown = [name for name in names if name not in self.models]
        if unknown:
            raise ExplorerError(f"no model named {', '.join(map(repr, unknown))}: the models are "
                                f"{', '.join(self.models)}")
        return names

    @property
    def max_k(self) -> int:
        """The largest k whose top-k is a ranking, not the whole gallery: `n_images - 1`."""
        return self.n_images - 1

    def _check_k(self, k) -> int:
        try:
            value = int(k)
        except (TypeError, ValueError):
            raise ExplorerError(f"k must be a whole number of images, got {k!r}") from None
        if value != k or value < 1:
            raise ExplorerError(f"k must be a whole number between 1 and {self.max_k}, got {k!r}")
        if value > self.max_k:
            # The top-k of the whole gallery is the gallery: its MaxSkew is the gallery's composition, not the
            # model's (the evaluation harness refuses such a k too).
            raise ExplorerError(f"k = {value} is not below the size of the gallery {self.gallery_name!r} "
                                f"({self.n_images} images): its top-k would be the whole gallery; choose k "
                                f"between 1 and {self.max_k}")
        return value

    @staticmethod
    def _check_prompt(prompt) -> str:
        if not isinstance(prompt, str) or not prompt.strip():
            raise ExplorerError("the prompt is empty: type what to retrieve, e.g. 'a photo of a doctor'")
        return prompt.strip()

    # -- the query ----------------------------------------------------------------------------------

    def scores(self, model: str, prompt: str) -> np.ndarray:
        """(n_images,) float32 cosine similarity of every gallery image to `prompt` under `model`."""
        entry = self.models[self._check_models([model])[0]]
        query = np.asarray(entry.encode_text(self._check_prompt(prompt)), dtype=np.float32).reshape(-1)
        embeddings = entry.image_embeddings
        if query.shape[0] != embeddings.shape[1]:
            raise ExplorerError(f"model {model!r}: its text embedding has {query.shape[0]} dimensions but its "
                                f"gallery embeddings have {embeddings.shape[1]}")
        out = np.empty(embeddings.shape[0], dtype=np.float32)
        for start in range(0, embeddings.shape[0], SCORE_CHUNK_ROWS):
            block = np.asarray(embeddings[start:start + SCORE_CHUNK_ROWS], dtype=np.float32)
            out[start:start + block.shape[0]] = block @ query
        return out

    def search(self, prompt: str, k: int, attribute: str, models: Sequence[str] | None = None) -> list[ModelAnswer]:
        """Each model's answer to `prompt` (see `ModelAnswer`); `models` defaults to all of them.

        Raises:
            ExplorerError: an empty prompt, k outside [1, gallery size], an attribute the gallery
                lacks, or an unknown model name.
        """
        prompt = self._check_prompt(prompt)
        k = self._check_k(k)
        attribute = self._check_attribute(attribute)
        names = self._check_models(models)
        codes, values = self._codes[attribute], self._values[attribute]
        answers = []
        for name in names:
            scores = self.scores(name, prompt)
            indices = top_k_indices(scores, k)
            metrics = fairness_metrics(scores, codes, k, self.desired, self.convention, metrics=("max_skew", "ndkl"))[k]
            counts = np.bincount(codes[indices], minlength=len(values))
            answers.append(ModelAnswer(
                model=name, indices=indices, scores=scores[indices],
                labels=[values[code] for code in codes[indices]],
                top_k_shares={value: float(count) / k for value, count in zip(values, counts)},
                gallery_shares=dict(self._gallery_shares[attribute]),
                max_skew=float(metrics["max_skew"][0]), ndkl=float(metrics["ndkl"][0]),
            ))  # fmt: skip
        return answers
