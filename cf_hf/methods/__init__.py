"""Debiasing methods, one folder each, in one registry (`registry.METHODS`, `get_method`).

- `counterfactual/`: the paper's method — `CounterfactualCLIPModel`, the losses, the group sampler,
  the trainer and `fit_counterfactual` (fine-tuning + WiSE-FT sweep).
- `clip_clip/`: drop the embedding dimensions most informative of the protected attribute; folded
  into both projections.
- `biased_prompts/`: project the spurious prompts' span out of the text embeddings, calibrated on
  prompt pairs; folded into the text projection.
- `closed_form/`: shrink the attribute subspace of group prototypes (prompts only) in both towers, the
  closed-form Pareto trade-off; folded into both projections.
- `bendvlm/`: BendVLM, per-query debiasing of text embeddings with a stored reference set
  (`BendVLMCLIPModel`, registered with the Auto classes).
- `bias_alignment/`: the bias-alignment module (CVPR 2025), small heads trained on a frozen CLIP's
  cached embeddings (`BiasAlignedCLIPModel`, registered with the Auto classes).
- `sfid/`: SFID (NeurIPS 2024) — the coordinates a random forest finds most attribute-important set to
  the low-confidence samples' mean; an affine map of unit-norm embeddings (`EmbeddingTransform`).
- `spd/`: SPD (CVPR 2026) — the attribute's linearly decodable subspace (iterative nullspace
  projection) replaced by the low-confidence samples' component; an `EmbeddingTransform`.
- `ffr/`: From Fake to Real — CLIP image classifiers trained on balanced synthetic data, then real data
  (ERM or GroupDRO).

Shared: `checkpoints` (what a fit returns), `linear` (folding a linear map into a plain `CLIPModel`),
`embedding_transform` + `transformed` (an affine map of unit-norm embeddings, saved as
`TransformedCLIPModel`), `attribute_prompts` (the attribute words and templates of prompt-based methods),
`low_confidence` (SFID's and SPD's neutral value), `training_utils` (datasets, resume), `compare` (every method under one protocol).
"""

from cf_hf.methods.linear import METHOD_CONFIG_FIELD, LinearMethod, MethodError, fold, save_folded
from cf_hf.methods.registry import (
    METHODS,
    MODEL_TYPES,
    NEEDS,
    MethodSpec,
    get_method,
    register_model_types,
    training_free_methods,
)

__all__ = ["METHODS", "METHOD_CONFIG_FIELD", "MODEL_TYPES", "NEEDS", "LinearMethod", "MethodError", "MethodSpec", "fold",
           "get_method", "register_model_types", "save_folded", "training_free_methods"]
