"""BendVLM as a plug-in `CLIPModel`: the query-time debiasing inside `get_text_features`.

`BendVLMCLIPModel` (`model_type: clip_bendvlm`, registered with `AutoConfig`/`AutoModel` when this
module is imported) is a whole CLIP plus what BendVLM needs at query time, stored as buffers in
safetensors: the attribute-labelled reference image embeddings and their labels, the attribute prompts'
embeddings, and the token ids of the augmentation templates (the text before and after the query, per
value and template). For each query `get_text_features`

1. builds the attribute-augmented queries from the query's own tokens (`[start] prefix query suffix
   [end]`, exactly the tokens of the augmented sentence, since CLIP's tokenizer splits at spaces),
2. embeds them with the same text tower (V × T extra sequences per query), and
3. returns `bendvlm_debias(...)`: unit-norm debiased query embeddings.

Several attributes (removed jointly, `debias.py`): the config lists them with their values
(attribute-major) and the reference labels are (n, A). Images are CLIP's own. `CLIPModel.from_pretrained` on the folder loads the plain CLIP (and warns about
the buffers).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import CLIPConfig, CLIPModel

from cf_hf.methods.bendvlm.debias import bendvlm_unit
from cf_hf.methods.linear import METHOD_CONFIG_FIELD

MODEL_TYPE = "clip_bendvlm"
# Prefix of BendVLM's buffers in the state dict.
BENDVLM_PREFIX = "bendvlm."
# BendVLM's default number of reference images per attribute value (the authors' configs use a fixed
# neighbourhood or a knee heuristic).
DEFAULT_NEIGHBORS = 100


class BendVLMCLIPConfig(CLIPConfig):
    """A `CLIPConfig` plus the sizes of BendVLM's stored data.

    Args:
        attribute: the protected attribute; values: its values (the reference labels index them).
        attributes: several attributes removed jointly (`attribute` is then ""); values then lists every
            attribute's values, attribute-major, `value_counts` how many each has. Unset (a single-attribute
            checkpoint, old ones included): `[attribute]` and `[len(values)]`.
        neighbors: reference images per value that define its local mean.
        reference_size: number of reference embeddings; template_count: augmentation templates T.
        prefix_length, suffix_length: padded token lengths of the augmentation texts.
        cf_hf_method: the method's record (settings, what it was fitted on).
    """

    model_type = MODEL_TYPE

    def __init__(self, attribute: str = "", values: list[str] | None = None, neighbors: int = DEFAULT_NEIGHBORS,
                 reference_size: int = 0, template_count: int = 1, prefix_length: int = 0, suffix_length: int = 0,
                 cf_hf_method: dict | None = None, attributes: list[str] | None = None,
                 value_counts: list[int] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.attribute = attribute
        self.values = list(values or [])
        self.attributes = list(attributes) if attributes else ([attribute] if attribute else [])
        self.value_counts = [int(count) for count in value_counts] if value_counts else [len(self.values)]
        if sum(self.value_counts) != len(self.values):
            raise ValueError(f"value_counts {self.value_counts} do not add up to the {len(self.values)} values")
        self.neighbors = int(neighbors)
        self.reference_size = int(reference_size)
        self.template_count = int(template_count)
        self.prefix_length = int(prefix_length)
        self.suffix_length = int(suffix_length)
        setattr(self, METHOD_CONFIG_FIELD, cf_hf_method or {})

    @classmethod
    def from_clip_config(cls, config: CLIPConfig, **settings) -> BendVLMCLIPConfig:
        """The config of an existing CLIP config (its towers unchanged) plus BendVLM's `settings`."""
        values = config.to_dict()
        for key in ("model_type", "architectures", "transformers_version", METHOD_CONFIG_FIELD):
            values.pop(key, None)
        return cls(**values, **settings)


class BendVLMData(nn.Module):
    """What BendVLM needs at query time, as persistent buffers (shapes from the config).

    Buffers: reference_embeddings (n, d), reference_labels (n,) ((n, A) for A > 1 attributes), attribute_prompts (V, d),
    prefix_ids (V·T, Lp) / prefix_lengths (V·T,), suffix_ids (V·T, Ls) / suffix_lengths (V·T,), rows
    ordered value-major (value 0's templates first).
    """

    def __init__(self, config: BendVLMCLIPConfig):
        super().__init__()
        dimension, count = config.projection_dim, len(config.values) * config.template_count
        self.register_buffer("reference_embeddings", torch.zeros(config.reference_size, dimension))
        label_shape = (config.reference_size,) if len(config.value_counts) == 1 else (config.reference_size,
                                                                                        len(config.value_counts))
        self.register_buffer("reference_labels", torch.zeros(label_shape, dtype=torch.long))
        self.register_buffer("attribute_prompts", torch.zeros(len(config.values), dimension))
        self.register_buffer("prefix_ids", torch.zeros(count, config.prefix_length, dtype=torch.long))
        self.register_buffer("prefix_lengths", torch.zeros(count, dtype=torch.long))
        self.register_buffer("suffix_ids", torch.zeros(count, config.suffix_length, dtype=torch.long))
        self.register_buffer("suffix_lengths", torch.zeros(count, dtype=torch.long))


class BendVLMCLIPModel(CLIPModel):
    """A `CLIPModel` whose text embeddings are debiased per query by BendVLM; images unchanged."""

    config_class = BendVLMCLIPConfig
    # The parameters and buffers that decide each tower's embeddings (the embedding cache's fingerprint).
    image_tower_prefixes = ("vision_model.", "visual_projection.")
    text_tower_prefixes = ("text_model.", "text_projection.", BENDVLM_PREFIX)

    def __init__(self, config: BendVLMCLIPConfig):
        super().__init__(config)
        self.bendvlm = BendVLMData(config)
        self.post_init()

    def _sequence_ends(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """(m,) index of each query's end token."""
        if attention_mask is not None:
            return attention_mask.sum(dim=1) - 1
        eos = self.config.text_config.eos_token_id
        return (input_ids == eos).int().argmax(dim=1)

    def augmented_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        """(m·V·T, L) input ids and attention mask of the attribute-augmented queries, query-major."""
        ends = self._sequence_ends(input_ids, attention_mask).tolist()
        data = self.bendvlm
        max_length = self.config.text_config.max_position_embeddings
        pad = self.config.text_config.pad_token_id
        pad = pad if pad is not None else self.config.text_config.eos_token_id
        sequences = []
        for row, end in zip(input_ids.tolist(), ends):
            start_token, core, end_token = row[0], row[1:end], row[end]
            for index in range(len(data.prefix_lengths)):
                prefix = data.prefix_ids[index, :data.prefix_lengths[index]].tolist()
                suffix = data.suffix_ids[index, :data.suffix_lengths[index]].tolist()
                body = (prefix + core + suffix)[:max_length - 2]
                sequences.append([start_token, *body, end_token])
        length = max(len(sequence) for sequence in sequences)
        ids = torch.full((len(sequences), length), pad, dtype=torch.long)
        mask = torch.zeros((len(sequences), length), dtype=torch.long)
        for index, sequence in enumerate(sequences):
            ids[index, :len(sequence)] = torch.tensor(sequence)
            mask[index, :len(sequence)] = 1
        return ids.to(input_ids.device), mask.to(input_ids.device)

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        """The BendVLM-debiased, unit-norm text embeddings (in `pooler_output`, as `CLIPModel`'s), (m, d)."""
        outputs = super().get_text_features(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        ids, mask = self.augmented_inputs(input_ids, attention_mask)
        augmented = super().get_text_features(input_ids=ids, attention_mask=mask).pooler_output
        data, queries = self.bendvlm, outputs.pooler_output
        values, templates = len(self.config.values), self.config.template_count
        unit = nn.functional.normalize
        # float64 for the small tensors; the stored reference (unit-norm, fitted) stays in its dtype.
        debiased = bendvlm_unit(
            unit(queries.to(torch.float64), dim=-1),
            unit(augmented.to(torch.float64), dim=-1).reshape(len(queries), values, templates, -1),
            data.attribute_prompts.to(torch.float64), data.reference_embeddings, data.reference_labels,
            self.config.neighbors, self.config.value_counts if len(self.config.value_counts) > 1 else None)
        outputs.pooler_output = debiased.to(queries.dtype)
        return outputs


def register_auto_classes() -> None:
    """Make `AutoConfig` / `AutoModel` resolve `model_type: clip_bendvlm` (idempotent)."""
    from cf_hf.methods.registry import register_with_auto_classes

    register_with_auto_classes(MODEL_TYPE, BendVLMCLIPConfig, BendVLMCLIPModel)


register_auto_classes()
