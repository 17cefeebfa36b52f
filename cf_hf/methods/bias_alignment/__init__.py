"""The bias-alignment module (seed 002, CVPR 2025): heads on a frozen CLIP that align image and text bias.

- `modeling`: `BiasAlignedCLIPConfig`, `BiasAlignedCLIPModel` (registered with `AutoConfig`/`AutoModel`).
- `losses`: L_ba and L_cd, pure tensor functions.
- `captions`: the authors' caption settings (`captions.yaml`), a template of one's own, and the captions of
  labelled images with every counterfactual each row may show.
- `rows`: the training rows (cached embeddings), their counterfactual redrawn at every epoch.
- `trainer`: `BiasAlignmentArguments`, the `Trainer` with queues and momentum heads, `train_bias_alignment`.
- `fit`: `fit_bias_alignment`, the variants the comparison trains.
"""

from cf_hf.methods.bias_alignment.modeling import (
    MODEL_TYPE,
    BiasAlignedCLIPConfig,
    BiasAlignedCLIPModel,
    BiasAlignmentHeads,
    register_auto_classes,
)

__all__ = ["MODEL_TYPE", "BiasAlignedCLIPConfig", "BiasAlignedCLIPModel", "BiasAlignmentHeads", "register_auto_classes"]
