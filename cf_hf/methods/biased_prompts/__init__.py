"""Biased prompts (Chuang et al. 2023): project the spurious prompts' span out of the text embeddings.

- `projection`: the prompts file (`biased_prompts.yaml`) and `biased_prompts_maps` (embeddings in, maps out).
- `fit`: `fit_biased_prompts` (a checkpoint in, folded checkpoints out, one per λ).
"""
