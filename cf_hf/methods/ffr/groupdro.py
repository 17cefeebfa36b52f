"""GroupDRO (Sagawa et al. 2020, "Distributionally Robust Neural Networks for Group Shifts", Alg. 1).

Written here rather than imported: the reference implementations (the authors' `group_DRO`
repository, WILDS' `examples/algorithms/groupDRO.py`) live in example scripts, not in an installable
library, and the algorithm is a few lines of tensor code. Like the losses of `cf_hf.methods.counterfactual.losses`, it is a
small module of pure tensor code, testable without a model.

Per batch: the mean loss of each group present, `loss_g`; the group weights move by exponentiated
gradient ascent, `q_g <- q_g * exp(step_size * loss_g)`, renormalized; the training loss is
`sum_g q_g * loss_g`. The weights are state kept across steps (a buffer).
"""

from __future__ import annotations

import torch
from torch import nn

# Sagawa et al.'s default step size for the group weights (their `--robust_step_size`).
DEFAULT_STEP_SIZE = 0.01


class GroupDROLoss(nn.Module):
    """The GroupDRO objective over `num_groups` groups, with its adversarial group weights.

    Args:
        num_groups: number of groups (group ids run from 0 to num_groups - 1).
        step_size: η, how fast the weights move towards the groups with the highest loss.
    """

    def __init__(self, num_groups: int, step_size: float = DEFAULT_STEP_SIZE):
        super().__init__()
        if num_groups < 1:
            raise ValueError(f"GroupDRO needs at least one group, got num_groups={num_groups}")
        if step_size < 0:
            raise ValueError(f"GroupDRO's step_size must be >= 0, got {step_size}")
        self.num_groups = num_groups
        self.step_size = step_size
        self.register_buffer("group_weights", torch.full((num_groups,), 1.0 / num_groups))

    def group_losses(self, losses: torch.Tensor, group_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(num_groups,) mean loss of each group in the batch (0 for an absent group) and (num_groups,)
        example counts, from (n,) per-example `losses` and (n,) int `group_ids`."""
        if group_ids.numel() and (int(group_ids.min()) < 0 or int(group_ids.max()) >= self.num_groups):
            raise ValueError(
                f"group ids must be in [0, {self.num_groups}), got values from {int(group_ids.min())} "
                f"to {int(group_ids.max())}"
            )
        one_hot = nn.functional.one_hot(group_ids.long(), self.num_groups).to(losses.dtype)  # (n, G)
        counts = one_hot.sum(dim=0)
        return (one_hot.T @ losses) / counts.clamp(min=1), counts

    def forward(self, losses: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
        """The robust loss Σ_g q_g loss_g (a scalar); in training mode the weights q are updated first.

        Args:
            losses: (n,) per-example losses (e.g. cross-entropy with reduction="none").
            group_ids: (n,) int group of each example.
        """
        group_losses, _ = self.group_losses(losses, group_ids)
        if self.training:
            with torch.no_grad():
                weights = self.group_weights * torch.exp(self.step_size * group_losses.detach())
                self.group_weights.copy_(weights / weights.sum())
        return (self.group_weights * group_losses).sum()
