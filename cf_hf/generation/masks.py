"""Stage 3 — human masks: which pixels are the person's appearance (not their attire).

`SegformerSegmenter` runs a `transformers` semantic-segmentation model (default the human-parsing
checkpoint `mattmdjaga/segformer_b2_clothes`) and keeps the labels named in `labels`, resolved by
name from the model's `id2label`. `MaskPostprocessing`, shared by every segmenter, dilates and
feathers a mask and rejects images whose person region is missing, too small or too large.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from cf_hf.generation.runtime import torch_dtype
from cf_hf.utils.model_loading import check_model_source, model_loading

logger = logging.getLogger(__name__)

DEFAULT_SEGMENTATION_MODEL = "mattmdjaga/segformer_b2_clothes"
# The person's appearance: what a counterfactual repaints. Plural names match every label whose
# name contains the singular as a word ("arms" -> Left-arm, Right-arm).
APPEARANCE_LABELS = ("Hair", "Face", "arms", "legs")
# Clothing joins the mask only when asked: attire is part of what makes the profession.
CLOTHING_LABELS = ("Upper-clothes", "Skirt", "Pants", "Dress", "Belt", "Scarf")

REJECT_NO_PERSON = "no_person"
REJECT_TOO_SMALL = "mask_too_small"
REJECT_TOO_LARGE = "mask_too_large"


def _normalize(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def resolve_label_ids(id2label: Mapping[int, str], names: Sequence[str], model_name: str = "the model") -> list[int]:
    """The ids of the labels called `names` (case and punctuation insensitive).

    A name matches a label exactly, or — for a plural such as "arms" — every label containing the
    singular as a word. Raises if none of `names` exists: the model is then not a human parser.
    """
    labels = {int(index): _normalize(label) for index, label in id2label.items()}
    found: list[int] = []
    missing = []
    for name in names:
        wanted = _normalize(name)
        matches = [index for index, label in labels.items() if label == wanted]
        if not matches and wanted.endswith("s"):
            matches = [index for index, label in labels.items() if wanted[:-1] in label.split("-")]
        if matches:
            found += [index for index in matches if index not in found]
        else:
            missing.append(name)
    if not found:
        raise ValueError(
            f"{model_name} has none of the person labels {list(names)} in its id2label "
            f"({sorted(id2label.values())}): it does not look like a human-parsing model. Use one "
            f"(default {DEFAULT_SEGMENTATION_MODEL}) or pass `labels=` naming its person classes."
        )
    if missing:
        warnings.warn(f"{model_name} has no labels {missing}; the mask uses {[id2label[i] for i in found]}.", stacklevel=2)
    return sorted(found)


def mask_label_names(labels: Sequence[str] = APPEARANCE_LABELS, include_clothing: bool = False) -> tuple[str, ...]:
    """The label names that form a person mask: `labels`, plus the clothing labels when asked for.
    The one definition of the mask, for the generation's segmenter and the verifier's."""
    return tuple(labels) + (CLOTHING_LABELS if include_clothing else ())


class SegformerSegmenter:
    """A `Segmenter` backed by `transformers` semantic segmentation; loads on first call.

    `labels` names the classes that form the mask; `include_clothing=True` adds the clothing
    classes (`CLOTHING_LABELS`) to repaint attire as well.
    """

    def __init__(
        self,
        model_id: str = DEFAULT_SEGMENTATION_MODEL,
        *,
        labels: Sequence[str] = APPEARANCE_LABELS,
        include_clothing: bool = False,
        revision: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        model=None,
        image_processor=None,
    ):
        torch_dtype(dtype)  # validate early
        self.model_id = model_id
        self.labels = mask_label_names(labels, include_clothing)
        self.revision = revision
        self.device = device
        self.dtype = dtype
        self._model = model
        self._image_processor = image_processor
        self._label_ids: list[int] | None = None

    @property
    def provenance(self) -> dict[str, str]:
        return {"model_id": self.model_id, "revision": self.revision or "main", "labels": ",".join(self.labels)}

    @classmethod
    def from_provenance(cls, provenance: Mapping[str, str], *, model_id: str | None = None, device: str = "cpu",
                        dtype: str = "float32") -> SegformerSegmenter:
        """The segmenter a run recorded (`provenance`, as in its manifest): the same model, revision
        and mask labels, so that a verifier's person masks are the generation's. `model_id` replaces
        the recorded model (the labels stay the run's)."""
        labels = [label for label in str(provenance.get("labels", "")).split(",") if label]
        if not labels:
            raise ValueError(f"the run's segmenter record {dict(provenance)} names no mask labels")
        revision = provenance.get("revision")
        recorded = provenance.get("model_id")
        return cls(model_id or recorded or DEFAULT_SEGMENTATION_MODEL, labels=labels,
                   revision=None if revision in (None, "main") or (model_id and model_id != recorded) else revision,
                   device=device, dtype=dtype)

    def check_model(self) -> None:
        """Raise `ModelLoadError` now if the model cannot be found (reads no weights)."""
        if self._model is None:
            check_model_source(self.model_id, self.revision, "segmentation model")

    def _load(self) -> None:
        if self._model is None:
            from transformers import AutoModelForSemanticSegmentation

            logger.info("loading segmentation model %s", self.model_id)
            dtype = torch_dtype(self.dtype)
            with model_loading(self.model_id, "segmentation model", self.revision):
                self._model = AutoModelForSemanticSegmentation.from_pretrained(
                    self.model_id, revision=self.revision, dtype=dtype
                )
            self._model.to(self.device).eval()
        if self._image_processor is None:
            from transformers import AutoImageProcessor

            with model_loading(self.model_id, "segmentation model", self.revision):
                self._image_processor = AutoImageProcessor.from_pretrained(self.model_id, revision=self.revision)
        if self._label_ids is None:
            self._label_ids = resolve_label_ids(self._model.config.id2label, self.labels, self.model_id)

    @property
    def label_ids(self) -> list[int]:
        """The model's ids of the mask labels (loads the model)."""
        self._load()
        return list(self._label_ids)

    def __call__(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        if not images:
            return []
        import torch

        self._load()
        inputs = self._image_processor(images=list(images), return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device, dtype=self._model.dtype)
        with torch.no_grad():
            outputs = self._model(pixel_values=pixel_values)
        label_maps = self._image_processor.post_process_semantic_segmentation(
            outputs, target_sizes=[(image.height, image.width) for image in images]
        )
        return [np.isin(label_map.cpu().numpy(), self._label_ids) for label_map in label_maps]


@dataclass(frozen=True)
class MaskResult:
    """A post-processed mask: `mask` (H, W) float32 in [0, 1] (None when rejected), `area` the
    fraction of the image the raw mask covers, `rejection` why the image is skipped (or None)."""

    mask: np.ndarray | None
    area: float
    rejection: str | None = None


@dataclass(frozen=True)
class MaskPostprocessing:
    """Dilate and feather a boolean person mask; reject it when its area is out of bounds.

    Sizes are fractions of the image's shorter side, so one setting fits 64 px tests and 1024 px
    images alike. Areas are fractions of the image.
    """

    dilation: float = 0.015
    feather: float = 0.01
    min_area: float = 0.02
    max_area: float = 0.6

    def __post_init__(self):
        if not 0.0 <= self.min_area <= self.max_area <= 1.0:
            raise ValueError(f"need 0 ≤ min_area ≤ max_area ≤ 1, got {self.min_area}, {self.max_area}.")
        if self.dilation < 0 or self.feather < 0:
            raise ValueError("dilation and feather must be ≥ 0.")

    def __call__(self, mask: np.ndarray) -> MaskResult:
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim != 2:
            raise ValueError(f"a mask must be (H, W), got shape {mask.shape}.")
        area = float(mask.mean())
        if area == 0.0:
            return MaskResult(None, area, REJECT_NO_PERSON)
        if area < self.min_area:
            return MaskResult(None, area, REJECT_TOO_SMALL)
        if area > self.max_area:
            return MaskResult(None, area, REJECT_TOO_LARGE)
        side = min(mask.shape)
        image = Image.fromarray(mask.astype(np.uint8) * 255)
        radius = round(self.dilation * side)
        if radius > 0:
            image = image.filter(ImageFilter.MaxFilter(2 * radius + 1))
        blur = self.feather * side
        if blur > 0:
            image = image.filter(ImageFilter.GaussianBlur(blur))
        soft = np.asarray(image, dtype=np.float32) / 255.0
        # Feathering must not un-mask the person: the raw mask stays fully repainted.
        return MaskResult(np.maximum(soft, mask.astype(np.float32)), area)
