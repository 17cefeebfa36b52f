"""The planned GPU memory of a generation run, computed from the models' parameter counts.

Every model is built from its configuration on the meta device (`accelerate.init_empty_weights`):
no weight is downloaded or allocated, so the plan is printed before anything loads. The plan counts
weights only (activations, the KV cache and the VAE's float32 upcast come on top); a GPU
measurement is `benchmarks/generation_memory.py --measure`.

```python
plan = plan_memory(caption_model="meta-llama/Llama-3.2-3B-Instruct", text_to_image_model=...,
                   segmentation_model=..., inpainting_model=..., dtype="float16")
print(plan.summary())
```
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BYTES_PER_PARAMETER = {"float32": 4, "float16": 2, "bfloat16": 2}
GB = 10**9


def _count(model) -> int:
    if hasattr(model, "tie_weights"):  # built empty, a transformers model is not tied yet
        model.tie_weights()
    return sum(parameter.numel() for parameter in model.parameters())


@functools.cache
def parameter_counts(model_id: str, revision: str | None = None) -> dict[str, int]:
    """Parameters of each model in a checkpoint (folder or Hub id), from its config files alone.

    A diffusers pipeline (a `model_index.json`) gives one entry per model component ("unet",
    "vae", "text_encoder", ...); a transformers model gives one entry, "model", built with the
    class its config names in `architectures`. Tied weights count once.
    """
    import diffusers
    import transformers
    from accelerate import init_empty_weights

    try:
        index = diffusers.DiffusionPipeline.load_config(model_id, revision=revision)
    except (OSError, ValueError):
        index = None
    counts = {}
    if index is None:
        config = transformers.AutoConfig.from_pretrained(model_id, revision=revision)
        architectures = getattr(config, "architectures", None) or ["AutoModel"]
        model_class = getattr(transformers, architectures[0])
        with init_empty_weights():
            model = model_class.from_config(config) if architectures[0].startswith("Auto") else model_class._from_config(config)
        counts["model"] = _count(model)
        return counts
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, (list, tuple)) or None in entry:
            continue
        library, class_name = entry
        if library == "diffusers":
            model_class = getattr(diffusers, class_name, None)
            if model_class is None or not issubclass(model_class, diffusers.ModelMixin):
                continue  # a scheduler
            config = model_class.load_config(model_id, subfolder=name, revision=revision)
            with init_empty_weights():
                counts[name] = _count(model_class.from_config(config))
        elif library == "transformers":
            model_class = getattr(transformers, class_name, None)
            if model_class is None or not issubclass(model_class, transformers.PreTrainedModel):
                continue  # a tokenizer, an image processor
            config = transformers.AutoConfig.from_pretrained(model_id, subfolder=name, revision=revision)
            with init_empty_weights():
                counts[name] = _count(model_class._from_config(config))
    return counts


def _label(model_id: str) -> str:
    """How a checkpoint is named in a plan: a Hub id as it is, a local folder by its name."""
    path = Path(model_id)
    return path.name if path.is_dir() else model_id


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes of weights resident on the device in each phase of a run, per checkpoint and model.

    `captions` holds the language model (empty with template captions); `images` what is resident
    while base images, masks and counterfactuals are made. Both map a checkpoint to its models'
    bytes ({"stabilityai/sdxl-turbo": {"unet": ..., "vae": ...}}). `peak_bytes` is the larger phase.
    """

    dtype: str
    captions: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    images: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    shared: Sequence[str] = ()
    cpu_offload: bool = False

    @property
    def captions_bytes(self) -> int:
        return sum(sum(models.values()) for models in self.captions.values())

    @property
    def images_bytes(self) -> int:
        return sum(sum(models.values()) for models in self.images.values())

    @property
    def peak_bytes(self) -> int:
        return max(self.captions_bytes, self.images_bytes)

    def summary(self) -> str:
        """A few lines: the planned peak and what makes it up, in GB (10^9 bytes)."""

        def listing(phase: Mapping[str, Mapping[str, int]]) -> str:
            parts = []
            for checkpoint, models in phase.items():
                detail = ", ".join(f"{name} {size / GB:.2f}" for name, size in models.items())
                parts.append(f"{checkpoint} {sum(models.values()) / GB:.2f}" + (f" ({detail})" if len(models) > 1 or "model" not in models else ""))
            return " + ".join(parts) or "nothing"

        lines = [
            f"planned peak GPU memory {self.peak_bytes / GB:.1f} GB ({self.dtype} weights from parameter "
            "counts; activations come on top)",
            f"  captions stage {self.captions_bytes / GB:.2f} GB: {listing(self.captions)}",
            f"  image stages   {self.images_bytes / GB:.2f} GB: {listing(self.images)}",
        ]
        if self.cpu_offload:
            lines.append("  CPU offload: one diffusion model on the GPU at a time, plus the VAE (the largest counted)")
        if self.shared:
            lines.append(f"  shared by the two diffusion pipelines: {', '.join(self.shared)}")
        return "\n".join(lines)


def plan_memory(
    *,
    caption_model: str | None,
    text_to_image_model: str,
    segmentation_model: str,
    inpainting_model: str | None,
    dtype: str,
    shared: Sequence[str] = (),
    cpu_offload: bool = False,
    release_caption_model: bool = True,
) -> MemoryPlan:
    """The weights on the device during a run with these models (all read with `parameter_counts`).

    `caption_model=None`: template captions. `inpainting_model=None`: the fast option (the
    text-to-image weights paint, nothing more loads). `shared`: inpainting components taken from
    the text-to-image pipeline instead of loaded again. `cpu_offload`: the diffusion pipelines keep
    one model on the device at a time. `release_caption_model=False` keeps the language model
    resident during the image stages (what happened before it was released).
    """
    if dtype not in BYTES_PER_PARAMETER:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(BYTES_PER_PARAMETER)}.")
    size = BYTES_PER_PARAMETER[dtype]

    def weights(model_id: str, skip: Sequence[str] = ()) -> dict[str, int]:
        return {name: count * size for name, count in parameter_counts(model_id).items() if name not in skip}

    captions = {_label(caption_model): weights(caption_model)} if caption_model is not None else {}
    diffusion = {_label(text_to_image_model): weights(text_to_image_model)}
    if inpainting_model is not None:
        inpainting = weights(inpainting_model, skip=shared)
        if _label(inpainting_model) in diffusion:  # one checkpoint for both: its models load twice
            inpainting = {f"{name} (inpainting)": value for name, value in inpainting.items()}
            diffusion[_label(inpainting_model)].update(inpainting)
        else:
            diffusion[_label(inpainting_model)] = inpainting
    if cpu_offload:
        # diffusers' offload chain (text encoders -> UNet -> VAE) moves one model in as the one
        # before it moves out, but the VAE (last, and first to run when inpainting encodes the
        # masked image) stays with the UNet until the call ends: the largest model plus the VAE.
        checkpoint, name = max(((c, n) for c, models in diffusion.items() for n in models), key=lambda k: diffusion[k[0]][k[1]])
        resident = {checkpoint: {name: diffusion[checkpoint][name]}}
        vaes = {c: models[n] for c, models in diffusion.items() for n in models if n.startswith("vae")}
        if vaes:
            vae_checkpoint = max(vaes, key=vaes.get)
            resident.setdefault(vae_checkpoint, {})["vae"] = vaes[vae_checkpoint]
        diffusion = resident
    images = {**diffusion, _label(segmentation_model): weights(segmentation_model)}
    if not release_caption_model:
        images.update(captions)
    return MemoryPlan(dtype=dtype, captions=captions, images=images, shared=tuple(shared), cpu_offload=cpu_offload)
