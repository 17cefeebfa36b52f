"""The bias-alignment (BA) module of "Joint Vision-Language Social Bias Removal for CLIP" (CVPR 2025,
arXiv 2411.12785) as a plug-in `CLIPModel`.

CLIP stays frozen; two small heads learn the bias component of its embeddings, following the
authors' released design: an image head `m` and a shared head `g`, each
`Linear(d, h) -> ReLU -> Linear(h, d) -> ReLU`. With `f` CLIP's unnormalized projection output,

    debiased image embedding = g(m(f_v) + f_v) + f_v,      debiased text embedding = g(f_t) + f_t.

`BiasAlignedCLIPModel.get_image_features` / `get_text_features` return the debiased embeddings, so
every consumer of a `CLIPModel` (the evaluation harness, `cf-hf compare`, `forward`'s logits) uses
them unchanged. The checkpoint is a whole CLIP plus the heads (`model_type: clip_bias_aligned`,
registered with the Auto classes when this module is imported; never `trust_remote_code`);
`CLIPModel.from_pretrained` on the same folder loads the original CLIP and warns about the heads.

The losses (`losses.py`):
- `bias_alignment_loss` (L_ba): KL between the image and the text *bias* embeddings' distributions
  (original − debiased, both unit-norm) over queues of original embeddings.
- `counterfactual_debiasing_loss` (L_cd): soft cross-entropy of the debiased image→text and
  text→image similarity distributions against the original model's as targets.
Training (data, queues, momentum heads, the Trainer): `cf_hf.methods.bias_alignment.trainer`.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import CLIPConfig, CLIPModel
from transformers import initialization as init

MODEL_TYPE = "clip_bias_aligned"
# Prefix of the heads' parameters in the state dict.
HEADS_PREFIX = "bias_alignment."
# The authors' temperature of the loss distributions. Their code declares it as a parameter but hands
# only the two heads to Adam, so it stays 0.07; cf_hf keeps it fixed unless training is told to learn it.
DEFAULT_TEMPERATURE = 0.07
# Head widths relative to the embedding size when not given: the authors' ViT-B sizes (512 and
# 1024 for 512-dimensional embeddings).
IMAGE_HEAD_RATIO, SHARED_HEAD_RATIO = 1, 2
# A learned temperature (an option, not the authors' setting) is kept in this range, as ALBEF-style code
# clamps it, so that a step cannot make the distributions degenerate.
TEMPERATURE_RANGE = (0.001, 0.5)


class BiasAlignedCLIPConfig(CLIPConfig):
    """A `CLIPConfig` plus the sizes of the BA heads.

    Args:
        image_head_size: hidden width of the image head `m` (None: the embedding size).
        shared_head_size: hidden width of the shared head `g` (None: twice the embedding size).
        loss_temperature: temperature of the loss distributions, fixed unless training learns it (not
            `temperature`: that name is reserved for generation settings).
        bias_alignment: what the training recorded (data, attribute, losses, settings).
    """

    model_type = MODEL_TYPE

    def __init__(self, image_head_size: int | None = None, shared_head_size: int | None = None,
                 loss_temperature: float = DEFAULT_TEMPERATURE, bias_alignment: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.image_head_size = int(image_head_size or IMAGE_HEAD_RATIO * self.projection_dim)
        self.shared_head_size = int(shared_head_size or SHARED_HEAD_RATIO * self.projection_dim)
        self.loss_temperature = float(loss_temperature)
        self.bias_alignment = bias_alignment or {}

    @classmethod
    def from_clip_config(cls, config: CLIPConfig, **head_settings) -> BiasAlignedCLIPConfig:
        """The BA config of an existing CLIP config (its towers unchanged)."""
        values = config.to_dict()
        for key in ("model_type", "architectures", "transformers_version"):
            values.pop(key, None)
        return cls(**values, **head_settings)


def _head(dimension: int, hidden: int) -> nn.Sequential:
    """The authors' head: Linear -> ReLU -> Linear -> ReLU."""
    return nn.Sequential(nn.Linear(dimension, hidden), nn.ReLU(), nn.Linear(hidden, dimension), nn.ReLU())


class BiasAlignmentHeads(nn.Module):
    """The image head `m`, the shared head `g` and the loss temperature τ (a parameter that only
    trains when asked to: `BiasAlignedCLIPModel.freeze_clip(learn_temperature=True)`)."""

    def __init__(self, dimension: int, image_head_size: int, shared_head_size: int, temperature: float):
        super().__init__()
        self.image_head = _head(dimension, image_head_size)
        self.shared_head = _head(dimension, shared_head_size)
        self.temperature = nn.Parameter(torch.tensor(float(temperature)))

    def debias_image(self, features: torch.Tensor) -> torch.Tensor:
        """(n, d) unnormalized image embeddings -> `g(m(f) + f) + f`, (n, d)."""
        return self.shared_head(self.image_head(features) + features) + features

    def debias_text(self, features: torch.Tensor) -> torch.Tensor:
        """(n, d) unnormalized text embeddings -> `g(f) + f`, (n, d)."""
        return self.shared_head(features) + features

    def loss_temperature(self) -> torch.Tensor:
        """τ as the losses use it: the fixed value, or, while it trains, clamped to `TEMPERATURE_RANGE`."""
        if self.temperature.requires_grad:
            return self.temperature.clamp(*TEMPERATURE_RANGE)
        return self.temperature


class BiasAlignedCLIPModel(CLIPModel):
    """A frozen `CLIPModel` whose embeddings pass through the BA heads.

    `get_image_features` / `get_text_features` return the debiased (unnormalized) embeddings in
    the output type of `CLIPModel`'s; `original_image_features` / `original_text_features` give
    CLIP's own. `from_clip(clip)` wraps an existing `CLIPModel` with fresh heads.
    """

    config_class = BiasAlignedCLIPConfig
    # The parameters that decide each tower's embeddings (the embedding cache's fingerprint).
    image_tower_prefixes = ("vision_model.", "visual_projection.", HEADS_PREFIX)
    text_tower_prefixes = ("text_model.", "text_projection.", HEADS_PREFIX)

    def __init__(self, config: BiasAlignedCLIPConfig):
        super().__init__(config)
        self.bias_alignment = BiasAlignmentHeads(config.projection_dim, config.image_head_size,
                                                 config.shared_head_size, config.loss_temperature)
        self.post_init()

    @classmethod
    def from_clip(cls, clip: CLIPModel, **head_settings) -> BiasAlignedCLIPModel:
        """`clip` (its weights copied) with freshly initialised heads; CLIP's parameters frozen."""
        model = cls(BiasAlignedCLIPConfig.from_clip_config(clip.config, **head_settings))
        missing, unexpected = model.load_state_dict(clip.state_dict(), strict=False)
        heads_only = all(name.startswith(HEADS_PREFIX) for name in missing)
        if unexpected or not heads_only:
            raise ValueError(f"the CLIP weights do not fit a BA model: missing {missing[:5]}, unexpected {unexpected[:5]}")
        model.freeze_clip()
        return model.to(clip.dtype)

    def _init_weights(self, module):
        """CLIP's initialisation, except the heads: PyTorch's default `nn.Linear` initialisation, as
        in the authors' code (CLIP's would draw them with std 1). Through `transformers.initialization`
        so that loaded weights are never overwritten."""
        super()._init_weights(module)
        if isinstance(module, BiasAlignmentHeads):
            for layer in (*module.image_head, *module.shared_head):
                if isinstance(layer, nn.Linear):
                    init.kaiming_uniform_(layer.weight, a=math.sqrt(5))
                    bound = 1 / math.sqrt(layer.in_features)
                    init.uniform_(layer.bias, -bound, bound)
            init.constant_(module.temperature, self.config.loss_temperature)

    def freeze_clip(self, learn_temperature: bool = False) -> None:
        """Freeze every parameter but the heads' (CLIP stays as it was); τ trains only with
        `learn_temperature` (the authors' optimiser holds the two heads alone)."""
        for name, parameter in self.named_parameters():
            parameter.requires_grad_(name.startswith(HEADS_PREFIX))
        self.bias_alignment.temperature.requires_grad_(learn_temperature)

    def original_image_features(self, pixel_values: torch.Tensor, **kwargs) -> torch.Tensor:
        """CLIP's own unnormalized image embeddings, (n, d)."""
        return super().get_image_features(pixel_values=pixel_values, **kwargs).pooler_output

    def original_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                               **kwargs) -> torch.Tensor:
        """CLIP's own unnormalized text embeddings, (n, d)."""
        return super().get_text_features(input_ids=input_ids, attention_mask=attention_mask, **kwargs).pooler_output

    def get_image_features(self, pixel_values: torch.Tensor, **kwargs):
        """The debiased image embeddings (in `pooler_output`, as `CLIPModel`'s)."""
        outputs = super().get_image_features(pixel_values=pixel_values, **kwargs)
        outputs.pooler_output = self.bias_alignment.debias_image(outputs.pooler_output)
        return outputs

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        """The debiased text embeddings (in `pooler_output`, as `CLIPModel`'s)."""
        outputs = super().get_text_features(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        outputs.pooler_output = self.bias_alignment.debias_text(outputs.pooler_output)
        return outputs


def register_auto_classes() -> None:
    """Make `AutoConfig` / `AutoModel` resolve `model_type: clip_bias_aligned` (idempotent)."""
    from cf_hf.methods.registry import register_with_auto_classes

    register_with_auto_classes(MODEL_TYPE, BiasAlignedCLIPConfig, BiasAlignedCLIPModel)


register_auto_classes()


# ---------------------------------------------------------------------------------------------
# Losses: pure tensor code.
