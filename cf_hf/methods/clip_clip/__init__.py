"""CLIP-clip (Wang et al. 2021): keep the embedding dimensions least informative of the attribute.

- `estimator`: the mutual information per dimension and `clip_clip_maps` (embeddings in, linear maps out).
- `fit`: `fit_clip_clip` (a checkpoint and a labelled gallery in, folded checkpoints out).
"""
