"""Stage 4 — counterfactuals: repaint the person region with the appearance of one grid cell.

`DiffusersInpainter` wraps `diffusers.AutoPipelineForInpainting` (default the SDXL inpainting
checkpoint), or — the fast option — reuses a loaded text-to-image pipeline's weights through
`AutoPipelineForInpainting.from_pipe` (`DiffusersInpainter.from_text_to_image`). Given the
text-to-image component (`share_with=`), it reuses that pipeline's text encoders, tokenizers and
VAE wherever the two checkpoints' configurations are the same (`shareable_components`), instead of
loading second copies. It paints at the checkpoint's native size (the UNet's `sample_size` × the
VAE's scale factor: 1024 px for SDXL) and returns images of the input size. The result is
composited onto the base image with the mask, so pixels outside the mask are the base's, exactly.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence

import numpy as np
from PIL import Image

from cf_hf.generation.base_images import DiffusersTextToImage, cpu_generators, place_pipeline
from cf_hf.generation.interfaces import InpaintRequest
from cf_hf.generation.runtime import check_diffusers_version, torch_dtype
from cf_hf.utils.model_loading import check_model_source, model_loading

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
# Components a text-to-image and an inpainting SDXL pipeline can hold in common: the SDXL 1.0
# text encoders and VAE stay frozen when its UNet is distilled (sdxl-turbo) or fine-tuned for
# inpainting, so the default checkpoints carry copies of the same models.
SHAREABLE_COMPONENTS = ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "vae")
# Configuration entries that describe a file, not the model it holds.
_CONFIG_METADATA = ("_name_or_path", "_commit_hash", "_diffusers_version", "transformers_version",
                    "architectures", "dtype", "torch_dtype", "_use_default_values")  # fmt: skip


def check_inpainting_pipeline(pipeline) -> None:
    """Raise a clear error unless `pipeline` is an inpainting pipeline (its call takes a mask)."""
    if "mask_image" not in inspect.signature(pipeline.__call__).parameters:
        raise TypeError(
            f"{type(pipeline).__name__} is not an inpainting pipeline (its __call__ takes no mask_image). "
            "Load one with diffusers.AutoPipelineForInpainting, or reuse a text-to-image pipeline's "
            "weights with DiffusersInpainter.from_text_to_image(...)."
        )


def _component_identity(model_id: str, name: str, library: str, class_name: str, revision: str | None):
    """What must match for two pipelines to share component `name`: its class and configuration
    (models), or its vocabulary and settings (tokenizers). Raises OSError when it cannot be read."""
    if library == "transformers" and "Tokenizer" in class_name:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_id, subfolder=name, revision=revision)
        backend = getattr(tokenizer, "backend_tokenizer", None)
        return (class_name, backend.to_str() if backend is not None else sorted(tokenizer.get_vocab().items()),
                tokenizer.model_max_length, str(tokenizer.special_tokens_map))  # fmt: skip
    if library == "transformers":
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(model_id, subfolder=name, revision=revision).to_dict()
    else:
        import diffusers

        config = dict(getattr(diffusers, class_name).load_config(model_id, subfolder=name, revision=revision))
    return (class_name, {key: value for key, value in config.items() if key not in _CONFIG_METADATA})


def shareable_components(
    text_to_image_model: str, inpainting_model: str, *, text_to_image_revision: str | None = None,
    inpainting_revision: str | None = None,
) -> tuple[str, ...]:
    """The components of `SHAREABLE_COMPONENTS` that both pipelines have with the same class and
    configuration (read from the config files; no weights are loaded), in that order."""
    from diffusers import DiffusionPipeline

    indexes = [
        DiffusionPipeline.load_config(model_id, revision=revision)
        for model_id, revision in ((text_to_image_model, text_to_image_revision), (inpainting_model, inpainting_revision))
    ]
    shared = []
    for name in SHAREABLE_COMPONENTS:
        entries = [index.get(name) for index in indexes]
        if None in entries or entries[0] != entries[1] or None in entries[0]:
            continue
        library, class_name = entries[0]
        try:
            first = _component_identity(text_to_image_model, name, library, class_name, text_to_image_revision)
            second = _component_identity(inpainting_model, name, library, class_name, inpainting_revision)
        except (OSError, ValueError) as error:
            logger.info("not sharing %s: its files could not be compared (%s)", name, error)
            continue
        if first == second:
            shared.append(name)
    return tuple(shared)


def native_size(pipeline) -> int:
    """The side, in pixels, a diffusers pipeline's UNet was trained at (sample_size × VAE scale)."""
    return int(pipeline.unet.config.sample_size) * int(pipeline.vae_scale_factor)


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

    `size` is the side the pipeline paints at (default: the checkpoint's native size; with
    `from_text_to_image`, the text-to-image size); images are resized to it and back.
    `share_with` names the text-to-image component whose text encoders, tokenizers and VAE are
    reused when their configurations match (without it, the checkpoint's own load).
    `variant` and `cpu_offload` are as for `DiffusersTextToImage`.
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
        size: int | None = None,
        cpu_offload: bool = False,
        share_with: DiffusersTextToImage | None = None,
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
        if size is not None and size < 8:
            raise ValueError(f"inpainting size must be at least 8 px, got {size} (--inpainting_size).")
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
        self.size = size
        self.cpu_offload = cpu_offload
        self.share_with = share_with if text_to_image is None else None
        self._shared: tuple[str, ...] | None = None
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
        size: int | None = None,
    ) -> DiffusersInpainter:
        """The fast option: inpaint with the text-to-image pipeline's own weights (`from_pipe`),
        no second model in memory. Loads when first called, with the text-to-image pipeline.
        Paints at the text-to-image size unless `size` is given."""
        return cls(
            text_to_image.model_id,
            revision=text_to_image.revision,
            num_inference_steps=num_inference_steps,
            strength=strength,
            guidance_scale=guidance_scale,
            device=text_to_image.device,
            dtype=text_to_image.dtype,
            size=size or max(text_to_image.height, text_to_image.width),
            text_to_image=text_to_image,
        )

    @property
    def shared_components(self) -> tuple[str, ...]:
        """The components taken from `share_with`'s pipeline (reads both checkpoints' configs once)."""
        if self._shared is None:
            self._shared = ()
            if self.share_with is not None and self._pipeline is None:
                self._shared = shareable_components(
                    self.share_with.model_id, self.model_id,
                    text_to_image_revision=self.share_with.revision, inpainting_revision=self.revision,
                )  # fmt: skip
        return self._shared

    @property
    def provenance(self) -> dict[str, str]:
        provenance = {
            "model_id": self.model_id,
            "revision": self.revision or "main",
            "from_pipe": str(self._text_to_image is not None),
            "steps": str(self.num_inference_steps),
            "strength": str(self.strength),
            "guidance_scale": str(self.guidance_scale),
            "dtype": self.dtype,
            "size": str(self.size) if self.size else "native",
        }
        if self.variant:
            provenance["variant"] = self.variant
        if self.shared_components:
            provenance["shared_from"] = f"{self.share_with.model_id}: {','.join(self.shared_components)}"
        return provenance

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

            check_diffusers_version()
            if self._text_to_image is not None:
                pipeline = AutoPipelineForInpainting.from_pipe(self._text_to_image.pipeline)
            else:
                shared = {name: getattr(self.share_with.pipeline, name) for name in self.shared_components}
                logger.info("loading inpainting pipeline %s (sharing %s)", self.model_id, ", ".join(shared) or "nothing")
                dtype = torch_dtype(self.dtype)
                with model_loading(self.model_id, "inpainting model", self.revision):
                    pipeline = AutoPipelineForInpainting.from_pretrained(
                        self.model_id, revision=self.revision, variant=self.variant, dtype=dtype, **shared
                    )
                pipeline = place_pipeline(pipeline, self.device, self.cpu_offload)
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

    def painting_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) the pipeline paints an image of this size at: the area of a square of
        `size` (default the native size), the input's aspect ratio, multiples of 8 latent pixels."""
        side = self.size or native_size(self.pipeline)
        step = 8 * int(self.pipeline.vae_scale_factor)
        scale = side / (width * height) ** 0.5
        return (max(step, round(width * scale / step) * step), max(step, round(height * scale / step) * step))

    def _paint(self, requests: Sequence[InpaintRequest]) -> list[Image.Image]:
        # The pipeline resizes image and mask to (width, height); its size conditioning
        # (original_size, target_size) follows, so the checkpoint sees the size it was trained at.
        width, height = self.painting_size(*requests[0].image.size)
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
