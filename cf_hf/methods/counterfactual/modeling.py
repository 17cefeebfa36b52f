"""`CounterfactualCLIPModel`: `CLIPModel` trained with `L = beta_clip * L_CLIP + beta_cf * L_cf`.

Only the loss changes. The weights, the config class and every other method are `CLIPModel`'s,
so a checkpoint saved from this class is a plain CLIP checkpoint: `save_pretrained` records
`architectures: ["CLIPModel"]` and `CLIPModel.from_pretrained(path)` loads it without cf_hf.

The loss settings are config fields that plain `CLIPModel` ignores (they stay in `config.json`
as a record of how the checkpoint was trained):

- `beta_clip`, `beta_cf`: weights of the two terms (>= 0, not both 0);
- `cf_temperature`: temperature of the counterfactual (supervised-contrastive) term;
- `clip_group_positives`: whether same-group pairs are positives of the CLIP term too.

A config without them (any Hub CLIP checkpoint) gets the defaults of `cf_hf.methods.counterfactual.losses`.
"""

from __future__ import annotations

import torch
from transformers import CLIPModel
from transformers.models.clip.modeling_clip import CLIPOutput

from cf_hf.methods.counterfactual.losses import (
    DEFAULT_BETA_CF,
    DEFAULT_BETA_CLIP,
    DEFAULT_CF_TEMPERATURE,
    LossTerms,
    counterfactual_clip_loss,
)

# The config fields of the loss and their defaults.
LOSS_CONFIG_DEFAULTS = {
    "beta_clip": DEFAULT_BETA_CLIP,
    "beta_cf": DEFAULT_BETA_CF,
    "cf_temperature": DEFAULT_CF_TEMPERATURE,
    "clip_group_positives": True,
}
# What saved checkpoints declare themselves to be, so that the Hub widget and other tools treat them
# as plain CLIP.
SAVED_ARCHITECTURE = "CLIPModel"


class CounterfactualCLIPModel(CLIPModel):
    """`CLIPModel` whose `forward(..., group_ids=..., return_loss=True)` returns the counterfactual loss."""

    # The loss is a mean over the (global) batch: the Trainer must scale it for gradient
    # accumulation itself rather than pass `num_items_in_batch` to `forward`.
    accepts_loss_kwargs = False

    def loss_setting(self, name: str):
        """A loss setting from the config (see module docstring), or its default."""
        return getattr(self.config, name, LOSS_CONFIG_DEFAULTS[name])

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        group_ids: torch.LongTensor | None = None,
        return_loss: bool | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs,
    ) -> CLIPOutput:
        """`CLIPModel.forward`, plus `group_ids` (batch,) integer ids of the counterfactual groups.

        With `return_loss=True`, `loss` is `beta_clip * L_CLIP + beta_cf * L_cf` over the batch of all
        processes. In training mode a batch without any two members of one group is an error; in
        evaluation mode its counterfactual term is zero.
        """
        outputs = super().forward(
            input_ids=input_ids,
            pixel_values=pixel_values,
            attention_mask=attention_mask,
            position_ids=position_ids,
            return_loss=False,
            interpolate_pos_encoding=interpolate_pos_encoding,
            **kwargs,
        )
        if return_loss:
            outputs.loss = self.loss_terms(
                outputs.image_embeds, outputs.text_embeds, group_ids
            ).loss
        return outputs

    def loss_terms(
        self, image_embeds: torch.Tensor, text_embeds: torch.Tensor, group_ids: torch.Tensor | None
    ) -> LossTerms:
        """The loss and its two terms from (batch, projection_dim) L2-normalized embeddings."""
        return counterfactual_clip_loss(
            image_embeds,
            text_embeds,
            self.logit_scale.exp(),
            group_ids,
            beta_clip=self.loss_setting("beta_clip"),
            beta_cf=self.loss_setting("beta_cf"),
            cf_temperature=self.loss_setting("cf_temperature"),
            clip_group_positives=self.loss_setting("clip_group_positives"),
            allow_no_positives=not self.training,
        )

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, then the config rewritten with `architectures: ["CLIPModel"]`."""
        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            self.config.architectures = [SAVED_ARCHITECTURE]
            self.config.save_pretrained(save_directory)
