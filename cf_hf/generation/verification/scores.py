"""The per-row scores and checks of a counterfactual against its group's base image (pure numpy / PIL).

- **context** — outside the (dilated) person mask of the base image: the mean absolute pixel
  difference (a fraction of the pixel range) and SSIM (`skimage.metrics.structural_similarity`);
- **adherence** — per grid attribute, the probability that the person crop shows the requested
  value (read by an `AttributeClassifier`), and whether the base image's own value was kept instead;
- **person** — the segmenter's person area in the counterfactual relative to the base image;
- **duplicates** — cosine similarities of the crop's embedding with the base image's and with any
  other image of its group: an edit that did nothing leaves a near-copy of the base.

Scores are the `verify_*` columns; `verdict` names the checks a row fails under the thresholds of
`VerificationConfig`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image, ImageFilter

SCORE_PREFIX = "verify_"
PASSED_COLUMN = "verify_passed"
FAILURES_COLUMN = "verify_failures"
CHECKS = ("context", "adherence", "person", "duplicates")
# Failure names in `verify_failures`.
FAIL_CONTEXT_DIFFERENCE = "context_difference"
FAIL_CONTEXT_SSIM = "context_ssim"
FAIL_ADHERENCE = "adherence_{attribute}"
FAIL_PERSON_MISSING = "person_missing"
FAIL_PERSON_DUPLICATED = "person_duplicated"
FAIL_DUPLICATE = "duplicate"
# SSIM needs an odd window no larger than the image; skimage's default is 7.
SSIM_WINDOW = 7


class VerificationError(ValueError):
    """The data cannot be verified as asked (an attribute value with no prompt, a missing column...)."""


@dataclass
class VerificationConfig:
    """Thresholds (a counterfactual passes when every check that ran passes) and how work is cut.

    Attributes:
        max_context_difference: largest mean absolute pixel difference outside the person, as a
            fraction of the pixel range (0–1).
        min_context_ssim: smallest SSIM outside the person.
        min_adherence: smallest probability of the requested value, per attribute.
        min_person_area_ratio / max_person_area_ratio: bounds of the person's area in the
            counterfactual relative to the base image (below: the person disappeared; above: the
            person was duplicated or grew).
        max_duplicate_similarity: largest cosine similarity of the person crop's embedding to the
            base image's (unless the base already shows the requested appearance).
        context_margin: extra dilation of the base image's person mask before the context is
            compared, as a fraction of the image's shorter side, on top of the mask dilation and
            feathering the generation used (`mask_dilation`, `mask_feather`).
        crop_margin: margin around the person's bounding box for the crop the classifier reads,
            as a fraction of the box's longer side.
        batch_size: images per classifier / embedder / segmenter call.
        chunk_groups: groups per resumable chunk.
    """

    max_context_difference: float = 0.02
    min_context_ssim: float = 0.9
    min_adherence: float = 0.5
    min_person_area_ratio: float = 0.5
    max_person_area_ratio: float = 2.0
    max_duplicate_similarity: float = 0.995
    context_margin: float = 0.03
    mask_dilation: float = 0.015
    mask_feather: float = 0.01
    crop_margin: float = 0.25
    batch_size: int = 64
    chunk_groups: int = 64

    def __post_init__(self):
        for name in ("batch_size", "chunk_groups"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}.")
        if not 0.0 <= self.min_person_area_ratio <= self.max_person_area_ratio:
            raise ValueError("need 0 ≤ min_person_area_ratio ≤ max_person_area_ratio.")
        for name in ("context_margin", "mask_dilation", "mask_feather", "crop_margin"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be ≥ 0, got {getattr(self, name)}.")

    def scoring(self) -> dict:
        """The settings that change the scores (thresholds only change the verdict)."""
        keys = ("context_margin", "mask_dilation", "mask_feather", "crop_margin")
        return {key: getattr(self, key) for key in keys}


@runtime_checkable
class ImageEmbedder(Protocol):
    def embed(self, crops: Sequence[Image.Image]) -> np.ndarray:
        """(N, D) unit-norm embeddings."""


def rgb_array(image) -> np.ndarray:
    return np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.uint8)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """A boolean (H, W) mask grown by `radius` pixels (a square max filter)."""
    mask = np.asarray(mask, dtype=bool)
    if radius <= 0:
        return mask
    image = Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(2 * radius + 1))
    return np.asarray(image) > 0


def context_scores(base, image, person: np.ndarray | None) -> tuple[float, float]:
    """(mean absolute difference as a fraction of 255, SSIM) of `image` against `base` on the
    pixels outside `person` ((H, W) bool; None: the whole image).

    SSIM is the mean of scikit-image's SSIM map over those pixels (channels averaged); a
    constant-color image pair counts as identical where it is."""
    from skimage.metrics import structural_similarity

    base, image = rgb_array(base), rgb_array(image)
    if base.shape != image.shape:
        raise VerificationError(f"a counterfactual is {image.shape[:2]}, its base image {base.shape[:2]}: sizes differ.")
    outside = np.ones(base.shape[:2], dtype=bool) if person is None else ~np.asarray(person, dtype=bool)
    if not outside.any():
        return 0.0, 1.0
    difference = np.abs(base.astype(np.float64) - image.astype(np.float64)).mean(axis=-1)
    window = min(SSIM_WINDOW, *(side - (1 - side % 2) for side in base.shape[:2]))
    if window < 3:  # too small for a window: SSIM is undefined, pixel identity stands in
        similarity = float(np.all(base[outside] == image[outside]))
    else:
        # The person region is taken from the base in both, so that windows straddling its edge
        # see only the context's changes.
        image = np.where(outside[..., None], image, base)
        _, ssim_map = structural_similarity(base, image, channel_axis=-1, data_range=255, win_size=window, full=True)
        similarity = float(ssim_map.mean(axis=-1)[outside].mean())
    return float(difference[outside].mean() / 255.0), similarity


def person_area_ratio(base_person: np.ndarray, person: np.ndarray) -> float | None:
    """The person's area in a counterfactual relative to the base image; None without a base person."""
    base_area = int(np.count_nonzero(base_person))
    return None if base_area == 0 else float(np.count_nonzero(person) / base_area)


def person_box(person: np.ndarray | None, shape: tuple[int, int], margin: float) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the person's bounding box grown by `margin` × its longer side;
    the whole image without a person."""
    height, width = shape
    if person is None or not np.any(person):
        return 0, 0, width, height
    rows, columns = np.nonzero(person)
    grow = math.ceil(margin * max(rows.max() - rows.min() + 1, columns.max() - columns.min() + 1))
    return (max(0, int(columns.min()) - grow), max(0, int(rows.min()) - grow),
            min(width, int(columns.max()) + 1 + grow), min(height, int(rows.max()) + 1 + grow))  # fmt: skip


def square_person_crop(image: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """The crop `box` of `image` made square before a CLIP processor sees it (its centre crop would
    otherwise cut the head or feet off a tall person): the shorter side grows symmetrically with the
    image's own pixels where the image has them, and the rest is filled with the crop's mean colour.
    Returns an RGB image of side max(box width, box height)."""
    left, top, right, bottom = box
    width, height = image.size
    side = max(right - left, bottom - top)

    def grow(start: int, stop: int, limit: int) -> tuple[int, int]:
        extra = side - (stop - start)
        start, stop = start - extra // 2, stop + extra - extra // 2
        shift = max(0, -start) - max(0, stop - limit)  # slide back inside the image where it can
        return max(0, start + shift), min(limit, stop + shift)

    left, right = grow(left, right, width)
    top, bottom = grow(top, bottom, height)
    crop = image.convert("RGB").crop((left, top, right, bottom))
    if crop.size == (side, side):
        return crop
    fill = tuple(int(round(channel)) for channel in np.asarray(crop, dtype=np.float64).reshape(-1, 3).mean(axis=0))
    square = Image.new("RGB", (side, side), fill)
    square.paste(crop, ((side - crop.width) // 2, (side - crop.height) // 2))
    return square


def duplicate_similarities(embeddings: np.ndarray) -> np.ndarray:
    """Per image of a group, the largest cosine similarity to any other image of it; (N,) from
    (N, D) unit-norm embeddings (-1 for a group of one)."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    similarity = embeddings @ embeddings.T
    np.fill_diagonal(similarity, -np.inf)
    best = similarity.max(axis=1) if len(embeddings) > 1 else np.full(len(embeddings), -1.0)
    return np.where(np.isfinite(best), best, -1.0)


class PixelEmbedder:
    """Crops resized to `size` × `size`, flattened, centred and scaled to unit norm: cosine
    similarity in pixel space. It tells an untouched copy (similarity 1) from any repaint, where a
    semantic embedding may call two different people the same; it knows nothing else."""

    def __init__(self, size: int = 32):
        self.size = size

    @property
    def provenance(self) -> dict[str, str]:
        return {"class": "PixelEmbedder", "size": str(self.size)}

    def embed(self, crops: Sequence[Image.Image]) -> np.ndarray:
        vectors = np.stack([
            np.asarray(crop.convert("RGB").resize((self.size, self.size), Image.BILINEAR), dtype=np.float64).ravel()
            for crop in crops
        ])  # fmt: skip
        vectors -= vectors.mean(axis=1, keepdims=True)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def score_columns(attributes: Sequence[str]) -> list[str]:
    """The score columns, in order (all but `verify_failures` numeric or boolean)."""
    return ([SCORE_PREFIX + "context_difference", SCORE_PREFIX + "context_ssim"]
            + [SCORE_PREFIX + f"adherence_{name}" for name in attributes]
            + [SCORE_PREFIX + f"kept_base_{name}" for name in attributes]
            + [SCORE_PREFIX + "person_area_ratio", SCORE_PREFIX + "duplicate_similarity",
               SCORE_PREFIX + "base_similarity", SCORE_PREFIX + "base_shows_requested",
               PASSED_COLUMN, FAILURES_COLUMN])  # fmt: skip


def score_features(attributes: Sequence[str]):
    """The `datasets.Features` of the score columns."""
    import datasets

    features = {}
    for name in score_columns(attributes):
        if name == FAILURES_COLUMN:
            features[name] = datasets.Value("string")
        elif name in (PASSED_COLUMN, SCORE_PREFIX + "base_shows_requested") or "kept_base_" in name:
            features[name] = datasets.Value("bool")
        else:
            features[name] = datasets.Value("float32")
    return datasets.Features(features)


def verdict(row: Mapping, attributes: Sequence[str], config: VerificationConfig) -> list[str]:
    """The names of the checks `row` (its score columns) fails; a null score is a skipped check."""
    failures = []

    def value(name):
        return row.get(SCORE_PREFIX + name)

    if value("context_difference") is not None and value("context_difference") > config.max_context_difference:
        failures.append(FAIL_CONTEXT_DIFFERENCE)
    if value("context_ssim") is not None and value("context_ssim") < config.min_context_ssim:
        failures.append(FAIL_CONTEXT_SSIM)
    for name in attributes:
        if value(f"adherence_{name}") is not None and value(f"adherence_{name}") < config.min_adherence:
            failures.append(FAIL_ADHERENCE.format(attribute=name))
    ratio = value("person_area_ratio")
    if ratio is not None and ratio < config.min_person_area_ratio:
        failures.append(FAIL_PERSON_MISSING)
    if ratio is not None and ratio > config.max_person_area_ratio:
        failures.append(FAIL_PERSON_DUPLICATED)
    # A near-copy of the base fails unless the base already showed the requested appearance (then
    # an unchanged person is the right answer). Near-copies among the counterfactuals are in
    # `verify_duplicate_similarity` for users to inspect: which of two copies is wrong is for
    # the adherence scores to say.
    copy = value("base_similarity")
    if copy is not None and copy > config.max_duplicate_similarity and not value("base_shows_requested"):
        failures.append(FAIL_DUPLICATE)
    return failures


# ---------------------------------------------------------------------------------------------
# Reading the attribute grid and the dataset's columns
# ---------------------------------------------------------------------------------------------


def grid_attribute(grid, name: str):
    """The attribute of `grid` named `name`."""
    return next(attribute for attribute in grid.attributes if attribute.name == name)


def column_as_strings(dataset, column: str) -> list[str | None]:
    """A column's values as strings (`ClassLabel` ids turned into names)."""
    feature = dataset.features[column]
    values = dataset.select_columns([column])[column]
    if hasattr(feature, "int2str"):
        return [None if value is None else feature.int2str(value) for value in values]
    return [None if value is None else str(value) for value in values]
