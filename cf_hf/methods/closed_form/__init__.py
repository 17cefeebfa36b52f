"""A closed-form, label-free projection (after Lian et al., CVPR 2026, "A Closed-Form Solution for
Debiasing Vision-Language Models with Utility Guarantees Across Modalities and Tasks").

- `projection`: group prototypes from prompt variants, the attribute subspace, the closed-form
  Chebyshev trade-off (`shrink_factor`) and `closed_form_maps` (embeddings in, linear maps out).
- `fit`: `fit_closed_form` (a checkpoint in, folded plain `CLIPModel` checkpoints out, one per weight).
"""
