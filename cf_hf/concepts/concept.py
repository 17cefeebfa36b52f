"""The concept type: a thing to debias, e.g. a profession."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Concept:
    """A concept to debias, e.g. a profession: `name="doctor", plural="doctors", article="a"`."""

    name: str
    plural: str
    article: str = "a"
