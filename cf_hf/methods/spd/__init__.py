"""SPD (Zhao et al., CVPR 2026, "Bias is a subspace, not a coordinate"): find the subspace in which the
attribute is linearly decodable by iterative nullspace projection, and replace each embedding's
component in it by that of the samples whose attribute cannot be told.

- `estimator`: `inlp_directions` and `spd_transforms` (attribute-labelled embeddings in,
  `EmbeddingTransform`s out, one per number of axes).
- `fit`: `fit_spd` (a checkpoint and a labelled gallery in, saved checkpoints out).
"""
