"""The two training losses of counterfactual fine-tuning, as pure tensor code.

`L = beta_clip * L_CLIP + beta_cf * L_cf` (docs/method.md §2):

- `clip_loss`: CLIP's symmetric image-text InfoNCE. With `group_ids`, every pair of one group is a
  positive (multi-positive soft targets): counterfactuals of one scene share a caption, so a caption
  matches every image of its group and never counts as a negative for them.
- `counterfactual_loss`: supervised-contrastive loss on the image embeddings: the other members of
  an image's group are its positives, every other image of the batch a negative.

Both functions see the whole batch they are given. Under several processes,
`counterfactual_clip_loss` first gathers the embeddings of every process *with gradients*
(`all_gather_with_grad`, as open_clip's `gather_features(gather_with_grad=True)`), so every process
computes the loss of the global batch: the same value and, after DDP averages the gradients, the same
update as one process on the concatenated batch.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

# Defaults of the loss weights and of the counterfactual temperature. They live here only: the
# model falls back to them and the training arguments take them as their defaults.
DEFAULT_BETA_CLIP = 1.0
DEFAULT_BETA_CF = 1.0
# CLIP's initial temperature (logit scale exp(2.6592) = 1/0.07), also SupCon's choice.
DEFAULT_CF_TEMPERATURE = 0.07


class NoPositivesError(ValueError):
    """A training batch has no two images of one group: the counterfactual loss would be a silent zero."""


def _same_group(group_ids: torch.Tensor) -> torch.Tensor:
    """(N,) ids -> (N, N) bool, True where two items share a group (diagonal included)."""
    return group_ids[:, None] == group_ids[None, :]


def clip_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor | float,
    group_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric image-text InfoNCE, optionally with same-group pairs as positives.

    Args:
        image_embeds: (N, D) L2-normalized image embeddings.
        text_embeds: (N, D) L2-normalized text embeddings; row i is the caption of image i.
        logit_scale: the multiplier of the cosine similarities, i.e. `model.logit_scale.exp()`.
        group_ids: optional (N,) integer ids. Items of one group share their caption (or a paraphrase),
            so every same-group pair is a positive: the target of a row is uniform over its group.
            Without them the target of row i is i alone, exactly `transformers`' CLIP loss.

    Returns:
        The scalar mean of the text->image and image->text cross-entropies.
    """
    logits_per_text = logit_scale * text_embeds @ image_embeds.t()
    if group_ids is None:
        targets = torch.arange(len(logits_per_text), device=logits_per_text.device)
        return (F.cross_entropy(logits_per_text, targets) + F.cross_entropy(logits_per_text.t(), targets)) / 2
    # Soft targets, each row normalized over its group. The matrix is symmetric, so both directions
    # use it unchanged.
    positives = _same_group(group_ids).to(logits_per_text.dtype)
    targets = positives / positives.sum(dim=1, keepdim=True)
    text_to_image = F.cross_entropy(logits_per_text, targets)
    image_to_text = F.cross_entropy(logits_per_text.t(), targets)
    return (text_to_image + image_to_text) / 2


def counterfactual_loss(
    image_embeds: torch.Tensor,
    group_ids: torch.Tensor,
    temperature: float = DEFAULT_CF_TEMPERATURE,
    allow_no_positives: bool = False,
) -> torch.Tensor:
    """Supervised-contrastive loss (Khosla et al. 2020, "L_out") over image embeddings.

    For an anchor i with positives P(i) = {p != i : group_p = group_i}:
    `l_i = -1/|P(i)| * sum_{p in P(i)} log( exp(z_i.z_p / t) / sum_{a != i} exp(z_i.z_a / t) )`,
    and the loss is the mean of `l_i` over the anchors that have at least one positive in the batch
    (anchors without one are excluded: they carry no counterfactual signal).

    Args:
        image_embeds: (N, D) L2-normalized image embeddings.
        group_ids: (N,) integer ids; images of one group are counterfactuals of one scene.
        temperature: the softmax temperature `t` (> 0).
        allow_no_positives: what a batch with no positive pair at all gives. False (training): a
            `NoPositivesError`, because a silent zero would hide a broken sampler. True (evaluation,
            where batches are not grouped): a zero that keeps the graph connected.

    Returns:
        A scalar.
    """
    if temperature <= 0:
        raise ValueError(f"counterfactual_loss: temperature must be > 0, got {temperature}")
    count = len(image_embeds)
    self_mask = torch.eye(count, dtype=torch.bool, device=image_embeds.device)
    positives = _same_group(group_ids.to(image_embeds.device)) & ~self_mask
    positive_counts = positives.sum(dim=1)
    anchors = positive_counts > 0
    if not bool(anchors.any()):
        if allow_no_positives:
            return image_embeds.sum() * 0.0
        raise NoPositivesError(
            "counterfactual_loss: no two images of this batch share a group_id, so the counterfactual "
            "loss has no positive pair. Batches must hold several members per group: use the "
            "GroupBatchSampler (cf_hf.methods.counterfactual.sampler) with group_size >= 2."
        )
    logits = image_embeds @ image_embeds.t() / temperature
    # The anchor itself is neither positive nor in the denominator.
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits.log_softmax(dim=1).masked_fill(self_mask, 0.0)
    mean_log_prob_positive = (log_prob * positives).sum(dim=1)[anchors] / positive_counts[anchors]
    return -mean_log_prob_positive.mean()


def world_size() -> int:
    """Number of processes of the default process group (1 when not distributed)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


class _AllGatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums the gradient over processes and returns this process's slice."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.rows = torch.distributed.get_rank(), tensor.shape[0]
        return all_gather_no_grad(tensor)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        # Every process's loss depends on every slice: the slice's gradient is the sum over processes.
        grad = grad_output.contiguous().clone()
        torch.distributed.all_reduce(grad)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` (N, ...) of every process in rank order -> (world_size * N, ...).

    Gradients flow back to each process's own slice, summed over processes (as open_clip's
    `gather_features(gather_with_grad=True)`); with DDP's gradient averaging the update then equals
    one process's on the concatenated batch. Every process must pass the same shape. With one
    process the tensor is returned unchanged.
    """
    if world_size() == 1:
        return tensor
    return _AllGatherWithGrad.apply(tensor)


def all_gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Like `all_gather_with_grad` for tensors that need no gradient (group ids)."""
    if world_size() == 1:
        return tensor
    gathered = [torch.empty_like(tensor) for _ in range(world_size())]
    torch.distributed.all_gather(gathered, tensor.contiguous())
    return torch.cat(gathered, dim=0)


class LossTerms(NamedTuple):
    """The combined loss and its two (unweighted) terms; a term not computed is None."""

    loss: torch.Tensor
    clip: torch.Tensor | None
    counterfactual: torch.Tensor | None


def counterfactual_clip_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor | float,
    group_ids: torch.Tensor | None = None,
    beta_clip: float = DEFAULT_BETA_CLIP,
    beta_cf: float = DEFAULT_BETA_CF,
    cf_temperature: float = DEFAULT_CF_TEMPERATURE,
    clip_group_positives: bool = True,
    allow_no_positives: bool = False,
) -> LossTerms:
    """`beta_clip * clip_loss + beta_cf * counterfactual_loss` over the batch of all processes.

    Args:
        image_embeds, text_embeds: (N, D) L2-normalized embeddings of this process.
        logit_scale: the multiplier of the CLIP similarities (`model.logit_scale.exp()`).
        group_ids: (N,) integer ids, required when `beta_cf > 0`. Ids must mean the same group in
            every process (map the dataset's ids once, e.g. with `cf_hf.methods.counterfactual.sampler.group_index`).
        beta_clip, beta_cf: weights (>= 0, not both 0). A term with weight 0 is not computed.
        cf_temperature: temperature of the counterfactual loss.
        clip_group_positives: pass `group_ids` to `clip_loss` (same-group pairs are positives). For
            identical captions within a group this gives the same loss as without.
        allow_no_positives: see `counterfactual_loss` (True in evaluation).
    """
    if beta_clip < 0 or beta_cf < 0:
        raise ValueError(f"loss weights must be >= 0, got beta_clip={beta_clip}, beta_cf={beta_cf}")
    if beta_clip == 0 and beta_cf == 0:
        raise ValueError("beta_clip and beta_cf are both 0: there is no loss to train on")
    if beta_cf > 0 and group_ids is None:
        raise ValueError(
            "the counterfactual loss (beta_cf > 0) needs `group_ids`: pass them to the model's forward "
            "(the cf_hf collator does), or set beta_cf=0 for the plain CLIP loss"
        )
    image_embeds = all_gather_with_grad(image_embeds)
    text_embeds = all_gather_with_grad(text_embeds)
    if group_ids is not None:
        group_ids = all_gather_no_grad(group_ids.to(image_embeds.device))

    clip_term = cf_term = None
    loss = image_embeds.new_zeros(())
    if beta_clip > 0:
        clip_term = clip_loss(
            image_embeds, text_embeds, logit_scale, group_ids if clip_group_positives else None
        )
        loss = loss + beta_clip * clip_term
    if beta_cf > 0:
        cf_term = counterfactual_loss(image_embeds, group_ids, cf_temperature, allow_no_positives)
        loss = loss + beta_cf * cf_term
    return LossTerms(loss, clip_term, cf_term)
