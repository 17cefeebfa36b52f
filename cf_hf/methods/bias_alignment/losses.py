"""The bias-alignment module's losses: pure tensor functions, testable without a model.

- `bias_alignment_loss` (L_ba): KL(p_text ‖ p_image) between the text and the image *bias* embeddings'
  distributions (original − debiased, both unit-norm) over queues of original embeddings.
- `counterfactual_debiasing_loss` (L_cd): soft cross-entropy of the debiased image→text and
  text→image similarity distributions against the original model's as targets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bias_embeddings(original: torch.Tensor, debiased: torch.Tensor) -> torch.Tensor:
    """The bias embedding: unit-norm original minus unit-norm debiased, (n, d)."""
    return F.normalize(original, dim=-1) - F.normalize(debiased, dim=-1)


def bias_alignment_loss(image_bias: torch.Tensor, text_bias: torch.Tensor, image_keys: torch.Tensor,
                        text_keys: torch.Tensor, temperature: torch.Tensor | float) -> torch.Tensor:
    """L_ba = mean_i KL(p_t,i ‖ p_v,i), p_v,i = softmax(b_v,i · K_v / τ), p_t,i = softmax(b_t,i · K_t / τ).

    The direction is the authors': `KLDivLoss(log_target=True)` with the image distribution as input
    and the text distribution as target, i.e. the text bias distribution is the reference.

    Args:
        image_bias, text_bias: (n, d) bias embeddings of n matching image / caption pairs.
        image_keys, text_keys: (m, d) unit-norm original image / text embeddings (batch and queue).
        temperature: τ.
    """
    image_log = F.log_softmax(image_bias @ image_keys.t() / temperature, dim=-1)
    text_log = F.log_softmax(text_bias @ text_keys.t() / temperature, dim=-1)
    return F.kl_div(image_log, text_log, reduction="batchmean", log_target=True)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """mean_i − Σ_j targets_ij log softmax(logits_i)_j."""
    return -(targets * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def counterfactual_debiasing_loss(
    debiased_image: torch.Tensor, debiased_text: torch.Tensor, original_image: torch.Tensor,
    original_text: torch.Tensor, image_keys: torch.Tensor, text_keys: torch.Tensor,
    temperature: torch.Tensor | float, image_targets: torch.Tensor | None = None,
    text_targets: torch.Tensor | None = None,
) -> torch.Tensor:
    """L_cd = ½ (CE(image→text) + CE(text→image)) with the original model's distributions as targets.

    Args:
        debiased_image: (n, d) unit-norm debiased embeddings of the images the batch shows (an image or,
            with image counterfactuals, another member of its group).
        debiased_text: (n, d) unit-norm debiased embeddings of the captions the batch shows (a caption
            or its attribute-swapped counterfactual).
        original_image, original_text: (n, d) unit-norm original embeddings of the rows' own image and
            caption: their similarities give the targets.
        image_keys, text_keys: (m, d) unit-norm original image / text embeddings (batch and queue).
        image_targets, text_targets: (n, m) targets to use instead (e.g. mixed with the momentum
            heads'); None: softmax of the original similarities.
    """
    with torch.no_grad():
        if image_targets is None:
            image_targets = F.softmax(original_image @ text_keys.t() / temperature, dim=-1)
        if text_targets is None:
            text_targets = F.softmax(original_text @ image_keys.t() / temperature, dim=-1)
    image_to_text = soft_cross_entropy(debiased_image @ text_keys.t() / temperature, image_targets)
    text_to_image = soft_cross_entropy(debiased_text @ image_keys.t() / temperature, text_targets)
    return (image_to_text + text_to_image) / 2


def combined_loss(cd: torch.Tensor, ba: torch.Tensor, alpha: float) -> torch.Tensor:
    """L = α L_cd + (1 − α) L_ba."""
    return alpha * cd + (1 - alpha) * ba
