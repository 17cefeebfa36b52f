"""The contracts between the generation stages.

A component is any callable with the signature below: the `diffusers`/`transformers` backed
defaults, the embedded professions world's procedural ones, or a user's own. The orchestration
only ever talks to these interfaces.
"""

from __future__ import annotations

__all__ = ["CaptionWriter", "Concept", "ImageRequest", "InpaintRequest", "Inpainter", "Segmenter", "TextToImage",
           "component_provenance"]

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from cf_hf.concepts.concept import Concept  # the data layer's type, re-exported for the components


@dataclass(frozen=True)
class ImageRequest:
    """One base image to render.

    `caption` is the neutral caption the dataset records; `prompt` is what a text-to-image model
    reads (the caption with the decorator phrases appended); `decorators` maps a decorator field
    (setting, lighting, framing, ...) to the value used.
    """

    concept: str
    caption: str
    prompt: str
    seed: int
    decorators: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class InpaintRequest:
    """One counterfactual to paint: repaint `mask` of `image` with the person described by
    `appearance` (attribute name -> value, e.g. {"gender": "female", "race": "Black", "age": "adult"});
    `prompt` is the appearance prompt built from it for a diffusion inpainter; `caption` is the
    base image's neutral caption (kept unchanged in the dataset)."""

    image: Image.Image
    mask: np.ndarray  # (H, W) float32 in [0, 1], 1 = repaint
    appearance: dict[str, str]
    prompt: str
    caption: str
    concept: str
    seed: int


@runtime_checkable
class CaptionWriter(Protocol):
    def __call__(self, concept: Concept, count: int, seed: int) -> list[str]:
        """`count` neutral captions for `concept` (scene and activity only, no appearance words)."""


@runtime_checkable
class TextToImage(Protocol):
    def __call__(self, requests: Sequence[ImageRequest]) -> list[Image.Image]:
        """One RGB image per request, deterministic given each request's seed."""


@runtime_checkable
class Segmenter(Protocol):
    def __call__(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        """One (H, W) bool mask per image, True on the person's appearance region (not attire)."""


@runtime_checkable
class Inpainter(Protocol):
    def __call__(self, requests: Sequence[InpaintRequest]) -> list[Image.Image]:
        """One RGB image per request, identical to the input outside the mask's support."""


def component_provenance(component: object) -> dict[str, str]:
    """What a component records about itself in the run manifest and the dataset card.

    A component may expose a `provenance` attribute: a flat mapping of strings (model id,
    revision, steps, dtype, ...) that together determine its outputs. Without one, its class
    name stands in. The run fingerprint is built from these, so a resumed run with different
    components is refused rather than silently mixed.

    A component that loads a model may also expose `check_model()`: raise if the model cannot be
    found, without loading it; `generate` calls it before it writes anything.
    """
    provenance = getattr(component, "provenance", None)
    if provenance is None:
        kind = type(component)
        return {"class": f"{kind.__module__}.{kind.__qualname__}"}
    return {str(key): str(value) for key, value in dict(provenance).items()}
