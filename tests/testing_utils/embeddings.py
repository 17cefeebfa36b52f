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


@dataclass
class TwoAttributeWorld:
    """Two planted attributes (`gender`, `age`), independent of each other: reference (n_ref, d) with
    reference_labels {attribute: (n_ref,)}; gallery (n, d) with gallery_labels {attribute: (n,)}; queries
    (n_professions, d) leaning towards one value of both; directions {attribute: (d,)}."""

    reference: np.ndarray
    reference_labels: dict[str, np.ndarray]
    gallery: np.ndarray
    gallery_labels: dict[str, np.ndarray]
    queries: np.ndarray
    directions: dict[str, np.ndarray]


def planted_two_attribute_world(directions: dict[str, np.ndarray], professions: int = 4, per_profession: int = 100,
                                reference_size: int = 800, strength: float = 1.0, noise: float = 0.4,
                                seed: int = 0) -> TwoAttributeWorld:
    """Embeddings `profession + Σ_a strength * (±1) * direction_a + noise`, the two attributes' values
    crossed evenly within each profession (every combination equally often)."""
    generator = np.random.default_rng(seed)
    names = list(directions)
    planted = np.stack([unit(np.asarray(directions[name], float)) for name in names])
    dimension = planted.shape[1]
    centres = generator.normal(size=(professions, dimension))
    centres -= centres @ np.linalg.pinv(planted) @ planted  # professions carry no attribute signal

    def draw(count_per_profession: int):
        profession = np.repeat(np.arange(professions), count_per_profession)
        index = np.tile(np.arange(count_per_profession), professions)
        labels = {name: (index >> position) % 2 for position, name in enumerate(names)}
        rows = centres[profession].copy()
        for name, direction in zip(names, planted):
            rows += strength * (2.0 * labels[name] - 1.0)[:, None] * direction
        return unit(rows + noise * generator.normal(size=rows.shape)), labels

    gallery, gallery_labels = draw(per_profession)
    reference, reference_labels = draw(reference_size // professions)
    leaning = np.where(np.arange(professions) % 2 == 0, 1.0, -1.0)
    queries = unit(centres + 1.5 * strength * leaning[:, None] * planted.sum(axis=0))
    return TwoAttributeWorld(reference=reference, reference_labels=reference_labels, gallery=gallery,
                             gallery_labels=gallery_labels, queries=queries,
                             directions={name: direction for name, direction in zip(names, planted)})
