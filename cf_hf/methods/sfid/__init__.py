"""SFID (Jung et al., NeurIPS 2024, "A unified debiasing approach for vision-language models across
modalities and tasks"): replace the embedding coordinates most important to a random forest that
predicts the attribute with their mean over the samples the forest is least sure about.

- `estimator`: `sfid_transforms` (attribute-labelled embeddings in, `EmbeddingTransform`s out, one per m).
- `fit`: `fit_sfid` (a checkpoint and a labelled gallery in, saved checkpoints out).
"""
