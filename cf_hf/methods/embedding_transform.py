"""Debiasing methods that are an affine map of CLIP's *unit-norm* embeddings: `z -> normalize(A z + b)`.

A linear map of the projection output folds into a plain `CLIPModel` (`linear.py`); an affine one does
not (normalization does not commute with an offset, and CLIP's projections have no bias), so such a
method is saved as its own small model class registered with the Auto classes, storing A and b per
tower in safetensors. Methods that fit such a map (SFID, SPD, …) return an `EmbeddingTransform`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cf_hf.methods.linear import NamedFit

TOWERS = ("image", "text")


@dataclass
class EmbeddingTransform(NamedFit):
    """A fitted affine map of unit-norm embeddings, per tower (None: that tower is unchanged).

    Attributes:
        method: the method's name (`sfid`, `spd`, …).
        settings: every setting that defines the fit; `swept` names those that vary within a sweep.
        fitted_on: what the fit used (data set, sizes, model), recorded in the checkpoint.
        image_matrix, text_matrix: (d, d) matrices A, or None for the identity.
        image_offset, text_offset: (d,) offsets b, or None for zero.
    """

    method: str
    settings: dict[str, Any]
    fitted_on: dict[str, Any] = field(default_factory=dict)
    image_matrix: np.ndarray | None = None
    image_offset: np.ndarray | None = None
    text_matrix: np.ndarray | None = None
    text_offset: np.ndarray | None = None
    swept: tuple[str, ...] = ()

    def parts(self, tower: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(A, b) of `tower` ("image" or "text")."""
        if tower not in TOWERS:
            raise ValueError(f"tower must be one of {TOWERS}, got {tower!r}")
        return getattr(self, f"{tower}_matrix"), getattr(self, f"{tower}_offset")

    def apply(self, embeddings: np.ndarray, tower: str) -> np.ndarray:
        """The map applied to (n, d) embeddings of `tower`: normalized, mapped, renormalized."""
        matrix, offset = self.parts(tower)
        embeddings = np.asarray(embeddings, dtype=np.float64)
        embeddings = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
        mapped = embeddings if matrix is None else embeddings @ np.asarray(matrix, dtype=np.float64).T
        if offset is not None:
            mapped = mapped + np.asarray(offset, dtype=np.float64)
        norms = np.linalg.norm(mapped, axis=1, keepdims=True)
        return mapped / np.where(norms == 0, 1.0, norms)
