"""The CLIP and counterfactual losses on hand-made embeddings (no model)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from transformers.models.clip.modeling_clip import image_text_contrastive_loss

from cf_hf.methods.counterfactual.losses import (
    NoPositivesError,
    clip_loss,
    counterfactual_clip_loss,
    counterfactual_loss,
)


def _unit(*shape, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=generator), dim=-1)


def test_clip_loss_without_groups_equals_transformers_loss():
    image, text = _unit(12, 16, seed=0), _unit(12, 16, seed=1)
    scale = torch.tensor(2.6592).exp()
    expected = image_text_contrastive_loss(scale * text @ image.t())
    assert clip_loss(image, text, scale).item() == pytest.approx(expected.item(), abs=1e-6)


def test_clip_loss_with_groups_is_the_soft_target_form():
    image, text = _unit(6, 8, seed=2), _unit(6, 8, seed=3)
    group_ids = torch.tensor([0, 0, 1, 1, 1, 2])
    scale = 10.0
    logits = scale * text @ image.t()
    # Written out: row i's target is uniform over its group, in both directions.
    expected = 0.0
    for direction in (logits, logits.t()):
        log_prob = direction.log_softmax(dim=1)
        for i in range(6):
            same = [j for j in range(6) if group_ids[j] == group_ids[i]]
            expected += -sum(log_prob[i, j] for j in same) / len(same) / 6
    assert clip_loss(image, text, scale, group_ids).item() == pytest.approx(expected.item() / 2, abs=1e-6)


def test_identical_captions_give_the_same_loss_with_and_without_groups():
    image = _unit(6, 8, seed=4)
    group_ids = torch.tensor([0, 0, 0, 1, 1, 2])
    text = _unit(3, 8, seed=5)[group_ids]  # one caption per group
    with_groups = clip_loss(image, text, 5.0, group_ids)
    without = clip_loss(image, text, 5.0)
    assert with_groups.item() == pytest.approx(without.item(), abs=1e-6)


def test_identical_captions_floor_is_log_of_duplicates():
    # Perfectly aligned, well separated groups of 4 identical captions: each row can do no better
    # than spreading its probability over the 4 images of its group.
    directions = torch.eye(3)
    group_ids = torch.tensor([0] * 4 + [1] * 4 + [2] * 4)
    image = text = directions[group_ids]
    assert clip_loss(image, text, 100.0).item() == pytest.approx(math.log(4), abs=1e-4)


def test_counterfactual_loss_on_hand_made_embeddings():
    # Two groups of two; anchors see one positive each.
    embeds = F.normalize(torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]]), dim=1)
    group_ids = torch.tensor([7, 7, 3, 3])
    temperature = 0.5
    similarity = embeds @ embeds.t() / temperature
    expected = 0.0
    for anchor, positive in [(0, 1), (1, 0), (2, 3), (3, 2)]:
        others = [j for j in range(4) if j != anchor]
        expected += -(similarity[anchor, positive] - torch.logsumexp(similarity[anchor, others], dim=0))
    loss = counterfactual_loss(embeds, group_ids, temperature)
    assert loss.item() == pytest.approx(expected.item() / 4, abs=1e-6)


def test_counterfactual_loss_excludes_anchors_without_a_positive():
    embeds = _unit(5, 8, seed=6)
    group_ids = torch.tensor([0, 0, 1, 1, 2])  # image 4 has no counterfactual in the batch
    similarity = embeds @ embeds.t() / 0.1
    expected = 0.0
    for anchor, positive in [(0, 1), (1, 0), (2, 3), (3, 2)]:
        others = [j for j in range(5) if j != anchor]
        expected += -(similarity[anchor, positive] - torch.logsumexp(similarity[anchor, others], dim=0))
    assert counterfactual_loss(embeds, group_ids, 0.1).item() == pytest.approx(expected.item() / 4, abs=1e-5)


def test_counterfactual_loss_is_lower_when_groups_cluster():
    group_ids = torch.tensor([0, 0, 1, 1, 2, 2])
    centres = _unit(3, 8, seed=7)
    clustered = F.normalize(centres[group_ids] + 0.05 * _unit(6, 8, seed=8), dim=1)
    scattered = _unit(6, 8, seed=9)
    assert counterfactual_loss(clustered, group_ids) < counterfactual_loss(scattered, group_ids)


def test_counterfactual_loss_without_any_positive_raises_in_training():
    with pytest.raises(NoPositivesError, match="no two images"):
        counterfactual_loss(_unit(4, 8), torch.arange(4))


def test_counterfactual_loss_without_any_positive_is_zero_in_evaluation():
    embeds = _unit(4, 8).requires_grad_()
    loss = counterfactual_loss(embeds, torch.arange(4), allow_no_positives=True)
    loss.backward()
    assert loss.item() == 0.0 and embeds.grad is not None


def test_gradients_flow_to_embeddings_and_logit_scale():
    image = _unit(8, 16, seed=10).requires_grad_()
    text = _unit(8, 16, seed=11).requires_grad_()
    log_scale = torch.tensor(2.0, requires_grad=True)
    group_ids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    terms = counterfactual_clip_loss(image, text, log_scale.exp(), group_ids, beta_clip=1.0, beta_cf=0.5)
    terms.loss.backward()
    assert terms.loss.item() == pytest.approx(terms.clip.item() + 0.5 * terms.counterfactual.item(), abs=1e-6)
    for tensor in (image, text, log_scale):
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0


def test_combined_loss_skips_a_term_with_zero_weight():
    image, text = _unit(4, 8, seed=12), _unit(4, 8, seed=13)
    terms = counterfactual_clip_loss(image, text, 1.0, group_ids=None, beta_clip=1.0, beta_cf=0.0)
    assert terms.counterfactual is None and terms.loss.item() == pytest.approx(terms.clip.item())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"beta_clip": -1.0}, "must be >= 0"),
        ({"beta_clip": 0.0, "beta_cf": 0.0}, "both 0"),
        ({"beta_cf": 1.0, "group_ids": None}, "needs `group_ids`"),
    ],
)
def test_combined_loss_rejects_bad_settings(kwargs, message):
    arguments = {"group_ids": torch.tensor([0, 0, 1, 1])} | kwargs
    with pytest.raises(ValueError, match=message):
        counterfactual_clip_loss(_unit(4, 8), _unit(4, 8, seed=1), 1.0, **arguments)
