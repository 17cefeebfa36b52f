"""Checkpoints of methods that transform CLIP's embeddings but do not fold into a plain `CLIPModel`.

A linear map of the embeddings folds into the projections (`linear.py`). An affine one does not (an
offset does not commute with normalization, and CLIP's projections have no bias), and a query-dependent
one (BendVLM) is no fixed map at all. Such a method is saved as a whole CLIP plus what it fitted, in a
small model class registered with `AutoConfig`/`AutoModel` (as the bias-aligned model is; never
`trust_remote_code`):

- `TransformedCLIPModel` (`model_type: clip_embedding_transform`): per tower an affine map of the
  unit-norm embedding, `z -> normalize(A z + b)`, with A and b stored as buffers in safetensors; it is
  what `save_transformed(original, EmbeddingTransform, output_dir)` writes (SFID, SPD, …).
- `write_checkpoint(model, processor, output_dir)`: the atomic writer every such method uses.

`get_image_features` / `get_text_features` return the transformed, unit-norm embeddings in
`pooler_output`, so the evaluation harness, `cf-hf compare`, `cf-hf explore` and `forward`'s logits use
them unchanged. `CLIPModel.from_pretrained` on the same folder loads the untransformed CLIP (and warns
about the extra buffers).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from torch import nn
from transformers import CLIPConfig, CLIPModel

from cf_hf.methods.embedding_transform import TOWERS, EmbeddingTransform
from cf_hf.methods.linear import METHOD_CONFIG_FIELD, MethodError, check_output_folder, load_clip

MODEL_TYPE = "clip_embedding_transform"
# Prefix of the map's buffers in the state dict.
TRANSFORM_PREFIX = "embedding_transform."


class TransformedCLIPConfig(CLIPConfig):
    """A `CLIPConfig` plus which towers an affine map transforms.

    Args:
        transformed_towers: the towers ("image", "text") whose embeddings are mapped; the others are CLIP's.
        cf_hf_method: the method's record (name, settings, what it was fitted on).
    """

    model_type = MODEL_TYPE

    def __init__(self, transformed_towers: list[str] | None = None, cf_hf_method: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        towers = list(transformed_towers or [])
        unknown = [tower for tower in towers if tower not in TOWERS]
        if unknown:
            raise ValueError(f"transformed_towers: unknown tower(s) {unknown}; use {list(TOWERS)}")
        self.transformed_towers = towers
        setattr(self, METHOD_CONFIG_FIELD, cf_hf_method or {})

    @classmethod
    def from_clip_config(cls, config: CLIPConfig, **settings) -> TransformedCLIPConfig:
        """The config of an existing CLIP config (its towers unchanged) plus `settings`."""
        values = config.to_dict()
        for key in ("model_type", "architectures", "transformers_version", METHOD_CONFIG_FIELD):
            values.pop(key, None)
        return cls(**values, **settings)


class AffineEmbeddingMap(nn.Module):
    """Per tower a (d, d) matrix and a (d,) offset, as persistent buffers (identity and zero until set)."""

    def __init__(self, dimension: int):
        super().__init__()
        for tower in TOWERS:
            self.register_buffer(f"{tower}_matrix", torch.eye(dimension))
            self.register_buffer(f"{tower}_offset", torch.zeros(dimension))

    def forward(self, embeddings: torch.Tensor, tower: str) -> torch.Tensor:
        """(n, d) embeddings -> `normalize(A normalize(z) + b)`, (n, d), computed in float64 then cast back."""
        matrix, offset = getattr(self, f"{tower}_matrix"), getattr(self, f"{tower}_offset")
        unit = nn.functional.normalize(embeddings.to(torch.float64), dim=-1)
        mapped = unit @ matrix.to(torch.float64).T + offset.to(torch.float64)
        return nn.functional.normalize(mapped, dim=-1).to(embeddings.dtype)


class TransformedCLIPModel(CLIPModel):
    """A `CLIPModel` whose embeddings pass through a fitted affine map of unit-norm embeddings.

    Towers not in `config.transformed_towers` return CLIP's own (unnormalized) embeddings.
    """

    config_class = TransformedCLIPConfig
    # The parameters and buffers that decide each tower's embeddings (the embedding cache's fingerprint).
    image_tower_prefixes = ("vision_model.", "visual_projection.", TRANSFORM_PREFIX + "image_")
    text_tower_prefixes = ("text_model.", "text_projection.", TRANSFORM_PREFIX + "text_")

    def __init__(self, config: TransformedCLIPConfig):
        super().__init__(config)
        self.embedding_transform = AffineEmbeddingMap(config.projection_dim)
        self.post_init()

    def _init_weights(self, module):
        """CLIP's initialization; the map starts as the identity (loaded buffers are never overwritten)."""
        super()._init_weights(module)
        if isinstance(module, AffineEmbeddingMap):
            from transformers import initialization as init

            for tower in TOWERS:
                init.copy_(getattr(module, f"{tower}_matrix"), torch.eye(self.config.projection_dim))
                init.zeros_(getattr(module, f"{tower}_offset"))

    def map_projected_features(self, features: torch.Tensor, tower: str) -> torch.Tensor:
        """What `get_*_features` apply to CLIP's projected features of `tower` ("image" or "text"), (n, d) ->
        (n, d): the fitted map, or nothing for an untransformed tower. The embedding engine calls it on the
        original's cached pooled outputs, so a gallery's backbone pass is shared with the original."""
        if tower in self.config.transformed_towers:
            return self.embedding_transform(features, tower)
        return features

    def get_image_features(self, pixel_values: torch.Tensor, **kwargs):
        """The mapped image embeddings (in `pooler_output`, as `CLIPModel`'s), (n, d)."""
        outputs = super().get_image_features(pixel_values=pixel_values, **kwargs)
        outputs.pooler_output = self.map_projected_features(outputs.pooler_output, "image")
        return outputs

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        """The mapped text embeddings (in `pooler_output`, as `CLIPModel`'s), (n, d)."""
        outputs = super().get_text_features(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        outputs.pooler_output = self.map_projected_features(outputs.pooler_output, "text")
        return outputs


def transformed_model(clip: CLIPModel, transform: EmbeddingTransform) -> TransformedCLIPModel:
    """`clip` (its weights copied) with `transform`'s maps; checks shapes and finiteness."""
    if type(clip) is not CLIPModel:
        raise MethodError(f"{transform.method} maps a plain CLIPModel's embeddings; got {type(clip).__name__}")
    dimension = clip.config.projection_dim
    towers = []
    parts = {}
    for tower in TOWERS:
        matrix, offset = transform.parts(tower)
        if matrix is None and offset is None:
            continue
        towers.append(tower)
        for name, value, shape in (("matrix", matrix, (dimension, dimension)), ("offset", offset, (dimension,))):
            if value is None:
                continue
            value = torch.as_tensor(value, dtype=torch.float64)
            if tuple(value.shape) != shape:
                raise MethodError(f"{transform.name}: the {tower} {name} is {tuple(value.shape)}, but the model's "
                                  f"embeddings have {dimension} dimensions: it was fitted on another model")
            if not torch.isfinite(value).all():
                raise MethodError(f"{transform.name}: the {tower} {name} has non-finite entries")
            parts[f"{tower}_{name}"] = value
    config = TransformedCLIPConfig.from_clip_config(clip.config, transformed_towers=towers,
                                                    cf_hf_method=transform.record())
    model = TransformedCLIPModel(config)
    missing, unexpected = model.load_state_dict(clip.state_dict(), strict=False)
    if unexpected or not all(name.startswith(TRANSFORM_PREFIX) for name in missing):
        raise MethodError(f"the CLIP weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
    with torch.no_grad():
        for name, value in parts.items():
            getattr(model.embedding_transform, name).copy_(value.to(torch.float32))
    return model.to(clip.dtype).eval()


def write_checkpoint(model, processor, output_dir: str | Path) -> Path:
    """Save `model` and `processor` in `output_dir`, complete or not at all (a temporary sibling renamed
    at the end); refuses a non-empty folder that is not a cf_hf checkpoint."""
    output_dir = Path(output_dir)
    check_output_folder(output_dir)
    temporary = output_dir.with_name(f".{output_dir.name}.partial")
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        model.save_pretrained(temporary)
        processor.save_pretrained(temporary)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    if output_dir.exists():
        shutil.rmtree(output_dir)
    temporary.rename(output_dir)
    return output_dir


def save_transformed(original: str | Path, transform: EmbeddingTransform, output_dir: str | Path,
                     loaded=None) -> Path:
    """Save `original` (a `CLIPModel` checkpoint) with `transform` as a `TransformedCLIPModel` in `output_dir`.

    Writes weights and the map (safetensors), config (with the method's record) and processor,
    atomically. `loaded`: the (model, processor) of `original` when the caller has them.
    """
    if not isinstance(transform, EmbeddingTransform):
        raise MethodError(f"save_transformed saves an EmbeddingTransform, got {type(transform).__name__}")
    check_output_folder(output_dir)
    model, processor = loaded or load_clip(original)
    return write_checkpoint(transformed_model(model, transform), processor, output_dir)


def register_auto_classes() -> None:
    """Make `AutoConfig` / `AutoModel` resolve `model_type: clip_embedding_transform` (idempotent)."""
    from cf_hf.methods.registry import register_with_auto_classes

    register_with_auto_classes(MODEL_TYPE, TransformedCLIPConfig, TransformedCLIPModel)


register_auto_classes()
