"""The fairness queries: prompt templates x concepts (default: the shipped professions), or a
gallery's own captions (PATA)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .sets import AttributeGallery, Query, fill_template

if TYPE_CHECKING:
    from .fairness import FairnessConfig


def build_queries(concepts: Sequence | None, templates: Sequence[str]) -> list[Query]:
    """Templates x concepts. A concept is a name or an object with `name` and `article`
    (default: the shipped professions, `cf_hf.concepts.load_concepts()`)."""
    if concepts is None:
        from cf_hf.concepts import load_concepts

        concepts = load_concepts()
    queries = []
    for concept in concepts:
        name = getattr(concept, "name", concept)
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"concepts: expected non-empty names, got {concept!r}")
        article = getattr(concept, "article", None)
        queries += [Query(text=fill_template(template, name, article), concept=name, template=template)
                    for template in templates]
    if not queries:
        raise ValueError("no fairness queries: concepts is empty")
    return queries


def gallery_queries(gallery: AttributeGallery, config: FairnessConfig) -> list[Query]:
    """The gallery's own queries (PATA captions) or the protocol's templates x concepts."""
    return list(gallery.queries) if gallery.queries is not None else build_queries(config.concepts, config.templates)
