"""Stage 2 — base images: a caption plus its decorators, rendered by a text-to-image pipeline.

`draw_decorators` and `decorated_prompt` turn a caption into the prompt a model reads;
`DiffusersTextToImage` renders a batch of them with `diffusers.AutoPipelineForText2Image`
(default `stabilityai/sdxl-turbo`), one seeded generator per sample.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence

from PIL import Image

from cf_hf.generation.interfaces import ImageRequest
from cf_hf.generation.runtime import check_diffusers_version, torch_dtype
from cf_hf.utils.model_loading import check_model_source, model_loading

logger = logging.getLogger(__name__)

DEFAULT_TEXT_TO_IMAGE_MODEL = "stabilityai/sdxl-turbo"
# sdxl-turbo is distilled for 1–4 steps without classifier-free guidance, at 512 px.
DEFAULT_TEXT_TO_IMAGE_STEPS = 1
DEFAULT_TEXT_TO_IMAGE_GUIDANCE = 0.0
DEFAULT_IMAGE_SIZE = 512


def draw_decorators(table: Mapping[str, Sequence[str]], seed: int) -> dict[str, str]:
    """One value per decorator field, drawn by `seed` (fields in the table's order)."""
    rng = random.Random(seed)
    return {name: rng.choice(list(values)) for name, values in table.items()}


def decorated_prompt(caption: str, decorators: Mapping[str, str]) -> str:
    """The text-to-image prompt: the caption with the decorator values appended."""
    if not decorators:
        return caption
    return caption.rstrip(" .") + ", " + ", ".join(decorators.values())


def place_pipeline(pipeline, device: str, cpu_offload: bool = False):
    """Move a diffusers pipeline to `device`, or with `cpu_offload` keep its weights in CPU memory
    and move one model at a time to `device` when it runs (`enable_model_cpu_offload`)."""
    if cpu_offload:
        pipeline.enable_model_cpu_offload(device=device)
        return pipeline
    return pipeline.to(device)


def cpu_generators(seeds: Sequence[int]) -> list:
    """One seeded CPU `torch.Generator` per sample: the initial noise, and so the image, depends
    only on the sample's seed — not on its batch, the device or the other samples."""
    import torch

    return [torch.Generator("cpu").manual_seed(int(seed)) for seed in seeds]


class DiffusersTextToImage:
    """A `TextToImage` backed by `diffusers.AutoPipelineForText2Image`; loads on first call.

    Pass `pipeline` to reuse an already loaded pipeline (its class must be a text-to-image one).
    `variant="fp16"` downloads the half-size fp16 weight files; `cpu_offload=True` keeps the
    weights in CPU memory and moves one model at a time to `device` (small GPUs).
    """

    def __init__(
        self,
        model_id: str = DEFAULT_TEXT_TO_IMAGE_MODEL,
        *,
        revision: str | None = None,
        variant: str | None = None,
        num_inference_steps: int = DEFAULT_TEXT_TO_IMAGE_STEPS,
        guidance_scale: float = DEFAULT_TEXT_TO_IMAGE_GUIDANCE,
        height: int = DEFAULT_IMAGE_SIZE,
        width: int = DEFAULT_IMAGE_SIZE,
        device: str = "cpu",
        dtype: str = "float32",
        cpu_offload: bool = False,
        pipeline=None,
    ):
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be ≥ 1, got {num_inference_steps}.")
        torch_dtype(dtype)  # validate early
        self.model_id = model_id
        self.revision = revision
        self.variant = variant
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self.height = height
        self.width = width
        self.device = device
        self.dtype = dtype
        self.cpu_offload = cpu_offload
        self._pipeline = pipeline

    @property
    def provenance(self) -> dict[str, str]:
        provenance = {
            "model_id": self.model_id,
            "revision": self.revision or "main",
            "steps": str(self.num_inference_steps),
            "guidance_scale": str(self.guidance_scale),
            "size": f"{self.width}x{self.height}",
            "dtype": self.dtype,
        }
        if self.variant:
            provenance["variant"] = self.variant
        return provenance

    def check_model(self) -> None:
        """Raise `ModelLoadError` now if the model cannot be found (reads no weights)."""
        if self._pipeline is None:
            check_model_source(self.model_id, self.revision, "text-to-image model")

    @property
    def pipeline(self):
        if self._pipeline is None:
            from diffusers import AutoPipelineForText2Image

            check_diffusers_version()
            logger.info("loading text-to-image pipeline %s", self.model_id)
            dtype = torch_dtype(self.dtype)
            with model_loading(self.model_id, "text-to-image model", self.revision):
                pipeline = AutoPipelineForText2Image.from_pretrained(
                    self.model_id, revision=self.revision, variant=self.variant, dtype=dtype
                )
            pipeline.set_progress_bar_config(disable=True)
            self._pipeline = place_pipeline(pipeline, self.device, self.cpu_offload)
        return self._pipeline

    def __call__(self, requests: Sequence[ImageRequest]) -> list[Image.Image]:
        if not requests:
            return []
        output = self.pipeline(
            prompt=[request.prompt for request in requests],
            num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale,
            height=self.height,
            width=self.width,
            generator=cpu_generators([request.seed for request in requests]),
        )
        return [image.convert("RGB") for image in output.images]
