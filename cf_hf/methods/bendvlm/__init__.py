"""BendVLM (Gerych et al., NeurIPS 2024): test-time, per-query debiasing of text embeddings.

- `debias`: the two steps as pure tensor code (local attribute subspace, equal similarity to the
  groups' nearest reference images, in closed form).
- `modeling`: `BendVLMCLIPConfig`, `BendVLMCLIPModel` (registered with `AutoConfig`/`AutoModel`).
- `fit`: `BendVLMFit`, `save_bendvlm`, `fit_bendvlm` (a checkpoint and a reference set in, checkpoints out).
"""
