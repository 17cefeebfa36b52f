"""The professions world's generation components, implementing `cf_hf.generation.interfaces`.

They plug into the same orchestration as the real defaults (an LLM caption writer, SDXL, SegFormer,
an SDXL inpainter), and, like those, they only see what the interfaces pass: captions, requests and
pixels. The segmenter and the inpainter find the person from the pixels alone (the world reserves
the person's colors, see `palette`), not from a record kept by the renderer, so images written to
disk and read back in another process (a resumed generation) work the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from PIL import Image
from scipy import ndimage

from cf_hf.generation.interfaces import Concept, ImageRequest, InpaintRequest

from . import render
from .palette import (
    CAMERA_NOISE,
    HAIR_COLORS,
    HAIR_INDICES,
    RESERVED_COLORS,
    SKIN_INDICES,
    SKIN_TONES,
    classify_pixels,
    segment_distances,
)
from .vocabulary import neutral_captions

# Margin (pixels) added around the estimated head envelope, for the error of the estimate.
ENVELOPE_MARGIN = 1.0
# Expected shortfall (pixels) of the widest rasterised row of the hair against its true width.
WIDTH_BIAS = 0.6
# Short hair ends 0.2 radii below the head centre, long hair 1.6 radii: the cut between them.
LONG_HAIR_BELOW = 0.8
# Largest noise the inpainter will imitate (the world's grainiest camera).
MAX_NOISE_STD = max(CAMERA_NOISE.values())
# Generator signature off: the components draw exactly what they drew before the option existed.
NO_SIGNATURE = 0.0


def add_signature(pixels: np.ndarray, strength: float, region: np.ndarray | None = None) -> np.ndarray:
    """Leave the world's generator signature in an image: a checkerboard texture of ±`strength`
    intensity levels (every channel) over `region` (default: everywhere).

    It stands in for the traces real generators leave (periodic upsampling artefacts, color
    casts): invisible to the eye at a few levels under the world's camera noise, but a fixed
    pattern a network can learn to detect, which is what the From Fake to Real experiment needs.

    Args:
        pixels: (H, W, 3) uint8.
        strength: texture amplitude in 0-255 levels; 0 returns `pixels` unchanged.
        region: optional (H, W) bool; pixels outside it are returned unchanged.

    Returns:
        (H, W, 3) uint8.
    """
    if strength < 0:
        raise ValueError(f"signature strength must be >= 0 (0-255 intensity levels), got {strength}")
    if strength == NO_SIGNATURE:
        return pixels
    rows, columns = np.indices(pixels.shape[:2])
    texture = np.where((rows + columns) % 2 == 0, strength, -strength)[..., None]
    marked = np.clip(np.rint(pixels.astype(np.float64) + texture), 0, 255).astype(np.uint8)
    if region is None:
        return marked
    return np.where(region[..., None], marked, pixels)


class _Signed:
    """The `signature` option shared by the world's generators."""

    signature: float = NO_SIGNATURE

    @property
    def provenance(self) -> dict[str, str] | None:
        # None (off): the run records the class name as before, so existing runs still resume.
        if self.signature == NO_SIGNATURE:
            return None
        kind = type(self)
        return {"class": f"{kind.__module__}.{kind.__qualname__}", "signature": str(self.signature)}


@dataclass(frozen=True)
class FoundPerson:
    """What the pixels say about the person: head geometry (pixels), lighting and attributes."""

    head_x: float
    head_y: float
    head_radius: float
    head: np.ndarray  # (H, W) bool: the head's hair, face and neck pixels
    arms: np.ndarray  # (H, W) bool: skin pixels outside the head
    gain: float
    noise_std: float
    gender: str
    skin_tone: str
    age: str

    @property
    def attributes(self) -> dict[str, str]:
        return {"gender": self.gender, "skin_tone": self.skin_tone, "age": self.age}


def find_person(image: np.ndarray, within: np.ndarray | None = None) -> FoundPerson | None:
    """Locate the person of a world image from its pixels, or None if there is none.

    The head is the largest connected region of appearance colors that contains hair; its width
    gives the head radius (hair is 2.1 radii wide in every style) and its top the head centre.

    Args:
        image: (H, W, 3) uint8.
        within: optional (H, W) bool; only these pixels are considered.
    """
    pixels = np.asarray(image, dtype=np.float64)
    classes = classify_pixels(pixels)
    appearance = classes >= 0
    if within is not None:
        appearance &= within
    # 4-connected regions, numbered in raster order of their first pixel.
    components, count = ndimage.label(appearance)
    is_hair = np.isin(classes, HAIR_INDICES)
    # The largest region with hair (the first in raster order on a tie); label 0 is the background.
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    with_hair = np.bincount(components[is_hair], minlength=count + 1) > 0
    sizes = np.where(with_hair, sizes, 0)
    sizes[0] = 0
    best = int(sizes.argmax())
    if best == 0:
        return None
    head = components == best
    rows, columns = np.nonzero(head)
    # The widest row of pixel centres inside the hair (2.1 radii wide) falls short of the full
    # width by about WIDTH_BIAS pixels; the top row's centre lies within half a pixel of the top.
    radius = (columns.max() - columns.min() + 1 + WIDTH_BIAS) / 2.1
    head_x = (columns.min() + columns.max() + 1) / 2.0
    head_y = rows.min() + 1.1 * radius
    is_skin = np.isin(classes, SKIN_INDICES)
    face = head & is_skin
    if not face.any():
        return None
    distances, gains = segment_distances(pixels[face])
    tone_index = int(
        np.bincount(distances.argmin(axis=1), minlength=len(RESERVED_COLORS))[list(SKIN_INDICES)].argmax()
    )
    gain = float(np.median(gains[:, tone_index]))
    residual = pixels[face] - gain * RESERVED_COLORS[tone_index]
    noise_std = float(min(np.sqrt(np.mean(residual**2)), MAX_NOISE_STD))
    hair_classes = classes[head & is_hair]
    hair_index = int(np.bincount(hair_classes, minlength=len(RESERVED_COLORS))[list(HAIR_INDICES)].argmax())
    long_hair = bool(
        (head & is_hair & (np.arange(image.shape[0])[:, None] > head_y + LONG_HAIR_BELOW * radius)).any()
    )
    return FoundPerson(
        head_x=float(head_x),
        head_y=float(head_y),
        head_radius=float(radius),
        head=head,
        arms=appearance & is_skin & ~head,
        gain=gain,
        noise_std=noise_std,
        gender="female" if long_hair else "male",
        skin_tone=list(SKIN_TONES)[tone_index],
        age=list(HAIR_COLORS)[hair_index],
    )


def _fill_from_neighbours(values: np.ndarray, unknown: np.ndarray) -> np.ndarray:
    """Fill `unknown` pixels of (H, W, 3) `values` by copying a known 4-neighbour, growing inwards.

    Copying (left/right first, then up/down) rather than averaging keeps every filled pixel an
    existing context color: an average of two context colors could fall on a reserved one.
    """
    values = values.copy()
    unknown = unknown.copy()
    while unknown.any():
        filled_any = False
        for axis, step in ((1, 1), (1, -1), (0, 1), (0, -1)):
            source_known = np.roll(~unknown, step, axis=axis)
            source_values = np.roll(values, step, axis=axis)
            # np.roll wraps around: the wrapped edge is not a neighbour.
            edge = [slice(None), slice(None)]
            edge[axis] = 0 if step == 1 else -1
            source_known[tuple(edge)] = False
            take = unknown & source_known
            if take.any():
                values[take] = source_values[take]
                unknown &= ~take
                filled_any = True
        if not filled_any:
            break
    return values


def _as_array(image) -> np.ndarray:
    return np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.uint8)


class WorldCaptionWriter:
    """Neutral captions for a world profession from templates (scene and activity, never the person)."""

    def __call__(self, concept: Concept, count: int, seed: int) -> list[str]:
        return neutral_captions(concept.name, count, np.random.default_rng(seed))


class WorldTextToImage(_Signed):
    """Renders `ImageRequest`s as world scenes: the concept picks the setting and prop, the
    decorators (framing, lighting, camera) the view, and the seed everything else.

    The person in a base image is drawn with uniform attributes: every one of them is replaced by
    the counterfactuals, and the base images are recorded as such (`is_base`).

    `signature` > 0 leaves the world's generator signature (`add_signature`) over the whole image;
    the default 0 draws no trace.
    """

    def __init__(
        self,
        image_size: int = render.DEFAULT_IMAGE_SIZE,
        prop_probability: float = render.PROP_PROBABILITY,
        signature: float = NO_SIGNATURE,
    ):
        self.image_size = image_size
        self.prop_probability = prop_probability
        add_signature(np.zeros((1, 1, 3), dtype=np.uint8), signature)  # checks the value now
        self.signature = signature

    def scene(self, request: ImageRequest) -> render.Scene:
        if request.concept not in render.PROFESSION_SETTINGS:
            raise ValueError(
                f"the professions world cannot draw {request.concept!r}: it knows {list(render.PROFESSIONS)}"
            )
        rng = np.random.default_rng(request.seed)
        person = render.sample_person(rng)
        known = {
            name: value
            for name, value in request.decorators.items()
            if name in ("framing", "lighting", "camera")
        }
        return render.sample_scene(
            render.PROFESSION_SETTINGS[request.concept],
            person,
            rng,
            profession=request.concept,
            prop_probability=self.prop_probability,
            decorators=known,
        )

    def __call__(self, requests: Sequence[ImageRequest]) -> list[Image.Image]:
        return [
            Image.fromarray(add_signature(render.render(self.scene(request), self.image_size)[0], self.signature))
            for request in requests
        ]


class WorldSegmenter:
    """Person appearance masks from the pixels: hair, face, neck and forearms, never attire.

    With `envelope=True` (default) the mask also covers every pixel that any hair style could
    occupy around the found head — the world's counterpart of dilating a segmentation mask — so
    that an inpainter can change long hair to short and back inside it.
    """

    def __init__(self, envelope: bool = True):
        self.envelope = envelope

    def __call__(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        masks = []
        for image in images:
            pixels = _as_array(image)
            person = find_person(pixels)
            if person is None:
                masks.append(np.zeros(pixels.shape[:2], dtype=bool))
                continue
            mask = person.head | person.arms
            if self.envelope:
                columns, rows = render.pixel_grid(pixels.shape[0])
                mask = mask | render.appearance_envelope(
                    columns, rows, person.head_x, person.head_y, person.head_radius, ENVELOPE_MARGIN
                )
            masks.append(mask)
        return masks


FAILURE_MODES = ("copy", "wrong_skin_tone")


@dataclass(frozen=True)
class FailureRule:
    """Plant one kind of inpainting failure at `rate` on the requests whose appearance matches
    `when` (attribute -> value; empty: every request).

    `copy` returns the base image unchanged (the person keeps the original appearance);
    `wrong_skin_tone` paints another skin tone than the one asked for (drawn uniformly).
    """

    mode: Literal["copy", "wrong_skin_tone"]
    rate: float
    when: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if self.mode not in FAILURE_MODES:
            raise ValueError(f"unknown failure mode {self.mode!r}; one of {FAILURE_MODES}.")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"a failure rate must be in [0, 1], got {self.rate}.")

    def applies(self, appearance: Mapping[str, str]) -> bool:
        return all(appearance.get(name) == value for name, value in self.when.items())


@dataclass(frozen=True)
class InpaintingFailures:
    """A failure model for `WorldInpainter`, so that a verifier can be measured against known
    failures. Each request draws, from its own seed, one number per rule; the first rule that
    applies and fires decides the failure (`planted`), so the planted failures of a run can be
    recomputed from its rows alone."""

    rules: tuple[FailureRule, ...] = ()
    seed: int = 0

    def _rng(self, request_seed: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, int(request_seed) % 2**63])

    def planted(self, appearance: Mapping[str, str], request_seed: int) -> str | None:
        """The failure planted on the request with this appearance and seed, or None."""
        draws = self._rng(request_seed).random(len(self.rules))
        for rule, draw in zip(self.rules, draws):
            if rule.applies(appearance) and draw < rule.rate:
                return rule.mode
        return None

    def wrong_skin_tone(self, requested: str, request_seed: int) -> str:
        """The skin tone a `wrong_skin_tone` failure paints instead of `requested`."""
        others = [tone for tone in SKIN_TONES if tone != requested]
        draw = self._rng(request_seed).random(len(self.rules) + 1)[-1]
        return others[int(draw * len(others))]

    def to_dict(self) -> dict:
        return {"seed": self.seed, "rules": [{"mode": r.mode, "rate": r.rate, "when": dict(r.when)} for r in self.rules]}


class WorldInpainter(_Signed):
    """Repaints the person inside the mask with the requested appearance; pixels outside the mask's
    support are returned unchanged, bit for bit.

    `failures` (off by default) plants failures as a real generator makes them: see
    `InpaintingFailures`.

    Inside the mask: the old head (hair, face, neck) is removed by filling from the surrounding
    context, the new hair, neck and face are drawn at the head's position and lighting, and the
    forearms are recolored to the new skin tone (keeping their noise). Appearance keys: `gender`,
    `skin_tone`, `age`; a missing key keeps the person's current value.

    `signature` > 0 leaves the world's generator signature (`add_signature`) over the repainted
    region (the mask's support); the default 0 draws no trace.
    """

    def __init__(self, failures: InpaintingFailures | None = None, signature: float = NO_SIGNATURE):
        add_signature(np.zeros((1, 1, 3), dtype=np.uint8), signature)  # checks the value now
        self.failures = failures
        self.signature = signature

    @property
    def provenance(self) -> dict[str, str] | None:
        """None without failures or signature (the class names the component, as before either existed)."""
        if self.failures is None and self.signature == NO_SIGNATURE:
            return None
        import json

        kind = type(self)
        record = {"class": f"{kind.__module__}.{kind.__qualname__}"}
        if self.failures is not None:
            record["failures"] = json.dumps(self.failures.to_dict())
        if self.signature != NO_SIGNATURE:
            record["signature"] = str(self.signature)
        return record

    def __call__(self, requests: Sequence[InpaintRequest]) -> list[Image.Image]:
        return [Image.fromarray(self.inpaint(request)) for request in requests]

    def inpaint(self, request: InpaintRequest) -> np.ndarray:
        if self.failures is not None:
            failure = self.failures.planted(request.appearance, request.seed)
            if failure == "copy":
                return _as_array(request.image).copy()
            if failure == "wrong_skin_tone" and "skin_tone" in request.appearance:
                wrong = self.failures.wrong_skin_tone(request.appearance["skin_tone"], request.seed)
                request = replace(request, appearance={**request.appearance, "skin_tone": wrong})
        original = _as_array(request.image)
        region = np.asarray(request.mask) > 0
        if region.shape != original.shape[:2]:
            raise ValueError(f"mask shape {region.shape} does not match the image {original.shape[:2]}")
        person = find_person(original, within=region)
        if person is None:
            raise ValueError(
                "no person found inside the mask: the world inpainter repaints a person's hair and face, "
                "so the mask must cover them (use WorldSegmenter)"
            )
        unknown_keys = set(request.appearance) - {"gender", "skin_tone", "age"}
        if unknown_keys:
            raise ValueError(
                f"the world draws gender, skin_tone and age; got unknown attributes {sorted(unknown_keys)} "
                "(use the world's attribute grid, cf_hf/world/attribute_grid.yaml)"
            )
        target = render.Person(**{**person.attributes, **request.appearance})
        rng = np.random.default_rng(request.seed)
        result = _fill_from_neighbours(original.astype(np.float64), person.head)
        columns, rows = render.pixel_grid(original.shape[0])
        hair_color = np.asarray(HAIR_COLORS[target.age], dtype=np.float64)
        skin_color = np.asarray(SKIN_TONES[target.skin_tone], dtype=np.float64)
        for label, shape in render.appearance_shapes(
            columns, rows, person.head_x, person.head_y, person.head_radius, target.gender
        ):
            paint = shape & region
            color = hair_color if label == render.HAIR else skin_color
            result[paint] = person.gain * color + rng.normal(
                0.0, person.noise_std, size=(int(paint.sum()), 3)
            )
        old_skin = np.asarray(SKIN_TONES[person.skin_tone], dtype=np.float64)
        result[person.arms] = original[person.arms] + person.gain * (skin_color - old_skin)
        painted = np.clip(np.rint(result), 0, 255).astype(np.uint8)
        return np.where(region[..., None], add_signature(painted, self.signature, region), original)


class WorldAttributeReader:
    """The world's stand-in for a zero-shot attribute classifier: reads gender, skin tone and age
    of the person in each crop from its pixels (`find_person`), as the world's segmenter finds the
    person. `cf-hf verify --world` uses it for the attributes the world's CLIP cannot judge on
    person crops (`cf_hf.world.verification.STAND_IN_ATTRIBUTES`). Probability 1 for the value
    read, uniform when no person is found."""

    VALUES = {"gender": ("female", "male"), "skin_tone": tuple(SKIN_TONES), "age": tuple(HAIR_COLORS)}

    def __call__(self, crops: Sequence[Image.Image], concepts: Sequence[str]) -> dict[str, np.ndarray]:
        probabilities = {name: np.zeros((len(crops), len(values))) for name, values in self.VALUES.items()}
        for index, crop in enumerate(crops):
            person = find_person(_as_array(crop))
            for name, values in self.VALUES.items():
                if person is None:
                    probabilities[name][index] = 1.0 / len(values)
                else:
                    probabilities[name][index, values.index(person.attributes[name])] = 1.0
        return probabilities
