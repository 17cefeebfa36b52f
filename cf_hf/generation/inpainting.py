"""Stage 4 — counterfactuals: repaint the person region with the appearance of one grid cell.

`DiffusersInpainter` wraps `diffusers.AutoPipelineForInpainting` (default the SDXL inpainting
checkpoint), or — the fast option — reuses a loaded text-to-image pipeline's weights through
`AutoPipelineForInpainting.from_pipe` (`DiffusersInpainter.from_text_to_image`). The result is
composited onto the base image with the mask, so pixels outside the mask are the base's, exactly.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence

import numpy as np
from PIL import Image

from cf_hf.generation.base_images import DiffusersTextToImage, cpu_generators
from cf_hf.generation.interfaces import InpaintRequest
from cf_hf.generation.runtime import torch_dtype
from cf_hf.loading import check_model_source, model_loading

logger = logging.getLogger(__name__)

DEFAULT_INPAINTING_MODEL = "diffusers/stable-diffusion-xl-1.0-inpainting-0.1"
# The checkpoint's recommended settings: strength just under 1 keeps a trace of the base's layout.
DEFAULT_INPAINTING_STEPS = 20
DEFAULT_INPAINTING_STRENGTH = 0.99
DEFAULT_INPAINTING_GUIDANCE = 8.0
# The turbo option (from_pipe on sdxl-turbo): few steps, full strength, no guidance.
FAST_INPAINTING_STEPS = 4
FAST_INPAINTING_STRENGTH = 1.0
FAST_INPAINTING_GUIDANCE = 0.0


def check_inpainting_pipeline(pipeline) -> None:
    """Raise a clear error unless `pipeline` is an inpainting pipeline (its call takes a mask)."""
    if "mask_image" not in inspect.signature(pipeline.__call__).parameters:
        raise TypeError(
            f"{type(pipeline).__name__} is not an inpainting pipeline (its __call__ takes no mask_image). "
            "Load one with diffusers.AutoPipelineForInpainting, or reuse a text-to-image pipeline's "
            "weights with DiffusersInpainter.from_text_to_image(...)."
        )


def composite(base: Image.Image, painted: Image.Image, mask: np.ndarray) -> Image.Image:
    """`mask`-weighted blend of `painted` over `base`; pixels where mask == 0 are `base`'s exactly."""
    if painted.size != base.size:
        painted = painted.resize(base.size, Image.Resampling.LANCZOS)
    weight = np.asarray(mask, dtype=np.float32)[..., None]
    base_pixels = np.asarray(base.convert("RGB"), dtype=np.float32)
    painted_pixels = np.asarray(painted.convert("RGB"), dtype=np.float32)
    blended = np.rint(weight * painted_pixels + (1.0 - weight) * base_pixels).astype(np.uint8)
    return Image.fromarray(np.where(weight > 0, blended, base_pixels.astype(np.uint8)))


class DiffusersInpainter:
    """An `Inpainter` backed by `diffusers.AutoPipelineForInpainting`; loads on first call.

    Diffusers runs `int(num_inference_steps * strength)` denoising steps: with 1 step and
    strength < 1 that is 0 and the pipeline fails, so such settings are refused here.
    """

    def __init__(
        self,
        model_id: str = DEFAULT_INPAINTING_MODEL,
        *,
        revision: str | None = None,
        variant: str | None = None,
        num_inference_steps: int = DEFAULT_INPAINTING_STEPS,
        strength: float = DEFAULT_INPAINTING_STRENGTH,
        guidance_scale: float = DEFAULT_INPAINTING_GUIDANCE,
        device: str = "cpu",
        dtype: str = "float32",
        pipeline=None,
        text_to_image: DiffusersTextToImage | None = None,
    ):
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {strength}.")
        if int(num_inference_steps * strength) < 1:
            raise ValueError(
                f"{num_inference_steps} step(s) at strength {strength} leave no denoising step "
                "(diffusers runs int(steps × strength)); use strength=1.0 or at least 2 steps."
            )
        torch_dtype(dtype)  # validate early
        if pipeline is not None:
            check_inpainting_pipeline(pipeline)
        self.model_id = model_id
        self.revision = revision
        self.variant = variant
        self.num_inference_steps = num_inference_steps
        self.strength = strength
        self.guidance_scale = guidance_scale
        self.device = device
        self.dtype = dtype
        self._pipeline = pipeline
        self._text_to_image = text_to_image

    @classmethod
    def from_text_to_image(
        cls,
        text_to_image: DiffusersTextToImage,
        *,
        num_inference_steps: int = FAST_INPAINTING_STEPS,
        strength: float = FAST_INPAINTING_STRENGTH,
        guidance_scale: float = FAST_INPAINTING_GUIDANCE,
    ) -> DiffusersInpainter:
        """The fast option: inpaint with the text-to-image pipeline's own weights (`from_pipe`),
        no second model in memory. Loads when first called, with the text-to-image pipeline."""
        return cls(
            text_to_image.model_id,
            revision=text_to_image.revision,
            num_inference_steps=num_inference_steps,
            strength=strength,
            guidance_scale=guidance_scale,
            device=text_to_image.device,
            dtype=text_to_image.dtype,
            text_to_image=text_to_image,
        )

    @property
    def provenance(self) -> dict[str, str]:
        return {
            "model_id": self.model_id,
            "revision": self.revision or "main",
            "from_pipe": str(self._text_to_image is not None),
            "steps": str(self.num_inference_steps),
            "strength": str(self.strength),
            "guidance_scale": str(self.guidance_scale),
            "dtype": self.dtype,
        }

    def check_model(self) -> None:
        """Raise `ModelLoadError` now if the model cannot be found (reads no weights)."""
        if self._text_to_image is not None:
            self._text_to_image.check_model()
        elif self._pipeline is None:
            check_model_source(self.model_id, self.revision, "inpainting model")

    @property
    def pipeline(self):
        if self._pipeline is None:
            from diffusers import AutoPipelineForInpainting

            if self._text_to_image is not None:
                pipeline = AutoPipelineForInpainting.from_pipe(self._text_to_image.pipeline)
            else:
                logger.info("loading inpainting pipeline %s", self.model_id)
                dtype = torch_dtype(self.dtype)
                with model_loading(self.model_id, "inpainting model", self.revision):
                    pipeline = AutoPipelineForInpainting.from_pretrained(
                        self.model_id, revision=self.revision, variant=self.variant, dtype=dtype
                    ).to(self.device)
            check_inpainting_pipeline(pipeline)
            pipeline.set_progress_bar_config(disable=True)
            self._pipeline = pipeline
        return self._pipeline

    def __call__(self, requests: Sequence[InpaintRequest]) -> list[Image.Image]:
        results: list[Image.Image] = []
        # One pipeline call per run of equally sized images (a batch must share a size).
        start = 0
        while start < len(requests):
            size = requests[start].image.size
            stop = start
            while stop < len(requests) and requests[stop].image.size == size:
                stop += 1
            results += self._paint(requests[start:stop])
            start = stop
        return results

    def _paint(self, requests: Sequence[InpaintRequest]) -> list[Image.Image]:
        width, height = requests[0].image.size
        output = self.pipeline(
            prompt=[request.prompt for request in requests],
            image=[request.image.convert("RGB") for request in requests],
            mask_image=[Image.fromarray(np.rint(request.mask * 255).astype(np.uint8)) for request in requests],
            num_inference_steps=self.num_inference_steps,
            strength=self.strength,
            guidance_scale=self.guidance_scale,
            height=height,
            width=width,
            generator=cpu_generators([request.seed for request in requests]),
        )
        return [
            composite(request.image, painted, request.mask)
            for request, painted in zip(requests, output.images)
        ]
