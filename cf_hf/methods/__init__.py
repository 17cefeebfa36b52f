"""Debiasing methods in one harness: each is fitted from an original CLIP and the data it needs, and
yields checkpoints that the evaluation harness and `cf-hf push` already read.

- `clip_clip` (`cf_hf.methods.clip_clip`): drop the embedding dimensions most informative of the
  protected attribute; folded into both projections.
- `biased_prompts` (`cf_hf.methods.biased_prompts`): project the spurious prompts' span out of the
  text embeddings, calibrated on prompt pairs; folded into the text projection.
- `bias_alignment` (`cf_hf.methods.bias_alignment`): the bias-alignment module (CVPR 2025), small
  heads trained on a frozen CLIP's cached embeddings; its checkpoints carry the heads
  (`BiasAlignedCLIPModel`, training in `cf_hf.methods.bias_alignment_training`).

The training-free methods are linear maps of the embeddings (`cf_hf.methods.linear`), so their
checkpoints are plain `CLIPModel` checkpoints that record the method in their config.
"""

from cf_hf.methods.linear import METHOD_CONFIG_FIELD, LinearMethod, MethodError, fold, save_folded

__all__ = ["METHOD_CONFIG_FIELD", "LinearMethod", "MethodError", "fold", "save_folded"]
