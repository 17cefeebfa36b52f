"""Synthetic embeddings with a planted attribute direction, for the tests of methods that transform
embeddings (SFID, SPD): a labelled reference set to fit on, a gallery of "professions" balanced in
the attribute, and one text query per profession that leans towards one attribute value, so that
the original ranking is skewed by construction and a method that removes the direction unskews it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cf_hf.metrics import max_skew


@dataclass
class PlantedWorld:
    """reference (n_ref, d) + reference_labels; gallery (n, d) + gallery_labels; queries (n_professions, d)."""

    reference: np.ndarray
    reference_labels: np.ndarray
    gallery: np.ndarray
    gallery_labels: np.ndarray
    queries: np.ndarray
    direction: np.ndarray


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def planted_world(dimension: int = 16, direction: np.ndarray | None = None, professions: int = 4,
                  per_profession: int = 100, reference_size: int = 600, strength: float = 1.0,
                  noise: float = 0.5, seed: int = 0) -> PlantedWorld:
    """Embeddings `profession + strength * (±1) * direction + noise`; `direction` (d,) defaults to a
    random unit vector (not a coordinate axis). Gallery labels are balanced within each profession."""
    generator = np.random.default_rng(seed)
    direction = unit(generator.normal(size=dimension) if direction is None else np.asarray(direction, float))
    centres = generator.normal(size=(professions, dimension))
    centres -= np.outer(centres @ direction, direction)  # professions carry no attribute signal

    def draw(count_per_profession: int):
        profession = np.repeat(np.arange(professions), count_per_profession)
        labels = np.tile(np.arange(count_per_profession) % 2, professions)
        sign = 2.0 * labels - 1.0
        rows = centres[profession] + strength * sign[:, None] * direction
        return unit(rows + noise * generator.normal(size=rows.shape)), labels

    gallery, gallery_labels = draw(per_profession)
    reference, reference_labels = draw(reference_size // professions)
    leaning = np.where(np.arange(professions) % 2 == 0, 1.0, -1.0)
    queries = unit(centres + 1.5 * strength * leaning[:, None] * direction)
    return PlantedWorld(reference=reference, reference_labels=reference_labels, gallery=gallery,
                        gallery_labels=gallery_labels, queries=queries, direction=direction)


def mean_max_skew(queries: np.ndarray, gallery: np.ndarray, labels: np.ndarray, k: int = 50) -> float:
    """Mean MaxSkew@k (uniform target) of the queries ranking the gallery by cosine similarity."""
    return float(np.mean(max_skew(unit(queries) @ unit(gallery).T, labels, k)))
