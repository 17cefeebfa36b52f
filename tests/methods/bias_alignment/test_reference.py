"""Reference test of the bias-alignment module: the authors' training step (`haoyusimon/VL_Debiasing`,
`clip_debiasing/models/model_vl_debiasing.py`, `train.py`) computed independently here from the paper
and that reading, on fixed inputs, against cf_hf's `BiasAlignmentTrainer.compute_loss`; and the
authors' optimiser, which holds only the two heads, leaving τ at 0.07."""

from __future__ import annotations

import copy

import pytest
import torch

from cf_hf.methods.bias_alignment.modeling import BiasAlignedCLIPModel
from cf_hf.methods.bias_alignment.rows import BiasAlignmentData
from cf_hf.methods.bias_alignment.trainer import BiasAlignmentArguments, BiasAlignmentTrainer, FeatureQueue
from cf_hf.utils.tiny_clip import build_tiny_clip

ROWS, QUEUE, TAU, ALPHA, RATIO = 6, 10, 0.07, 0.3, 0.4


def _unit(rows: torch.Tensor) -> torch.Tensor:
    return rows / rows.norm(dim=-1, keepdim=True)


def _debias_image(heads: dict, f: torch.Tensor) -> torch.Tensor:
    """g(m(f) + f) + f with m, g = Linear -> ReLU -> Linear -> ReLU, from raw weight matrices."""
    def mlp(weights, x):
        return torch.relu(torch.relu(x @ weights[0].T + weights[1]) @ weights[2].T + weights[3])
    return mlp(heads["g"], mlp(heads["m"], f) + f) + f


def _debias_text(heads: dict, f: torch.Tensor) -> torch.Tensor:
    return torch.relu(torch.relu(f @ heads["g"][0].T + heads["g"][1]) @ heads["g"][2].T + heads["g"][3]) + f


def _weights(module) -> dict:
    layers = lambda head: [p.detach().clone() for p in head.parameters()]  # noqa: E731
    return {"m": layers(module.image_head), "g": layers(module.shared_head)}


def authors_loss(heads, momentum_heads, image, text1, text2, image_queue, text_queue, swap: bool, epoch: int):
    """The authors' forward, written out: keys [batch; queue]; targets from the original embeddings mixed
    (after epoch 5) with the momentum heads' of the original image and first caption; L_ba =
    KL(p_text ‖ p_image) via KLDivLoss(log p_image, log p_text, log_target); L_cd against the targets with
    the first or (whole batch) the second caption; L = α L_cd + (1 − α) L_ba."""
    original_image, original_text = _unit(image), _unit(text1)
    image_all = torch.cat([original_image, image_queue])
    text_all = torch.cat([original_text, text_queue])
    i2t_targets = torch.softmax(original_image @ text_all.T / TAU, dim=1)
    t2i_targets = torch.softmax(original_text @ image_all.T / TAU, dim=1)
    if epoch >= 5:
        i2t_m = torch.softmax(_unit(_debias_image(momentum_heads, image)) @ text_all.T / TAU, dim=1)
        t2i_m = torch.softmax(_unit(_debias_text(momentum_heads, text1)) @ image_all.T / TAU, dim=1)
        i2t_targets = RATIO * i2t_m + (1 - RATIO) * i2t_targets
        t2i_targets = RATIO * t2i_m + (1 - RATIO) * t2i_targets
    fair_image = _unit(_debias_image(heads, image))
    fair_text1, fair_text2 = _unit(_debias_text(heads, text1)), _unit(_debias_text(heads, text2))
    log_p_image = torch.log_softmax((original_image - fair_image) @ image_all.T / TAU, dim=1)
    log_p_text = torch.log_softmax((original_text - fair_text1) @ text_all.T / TAU, dim=1)
    loss_ba = (log_p_text.exp() * (log_p_text - log_p_image)).sum() / len(image)
    fair_text = fair_text2 if swap else fair_text1
    loss_i2t = -(torch.log_softmax(fair_image @ text_all.T / TAU, dim=1) * i2t_targets).sum(1).mean()
    loss_t2i = -(torch.log_softmax(fair_text @ image_all.T / TAU, dim=1) * t2i_targets).sum(1).mean()
    return ALPHA * (loss_i2t + loss_t2i) / 2 + (1 - ALPHA) * loss_ba


@pytest.fixture(scope="module")
def tiny_original(tmp_path_factory):
    model, processor = build_tiny_clip(texts=["a photo of a person"] * 4, seed=0)
    folder = tmp_path_factory.mktemp("original")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _arguments(tmp_path, **overrides) -> BiasAlignmentArguments:
    values = dict(output_dir=str(tmp_path / "ba"), per_device_train_batch_size=ROWS, queue_size=QUEUE, use_cpu=True,
                  save_strategy="no", eval_strategy="no", early_stopping_patience=0, disable_tqdm=True, seed=0,
                  report_to=[])
    values.update(overrides)
    return BiasAlignmentArguments(**values)


@pytest.mark.parametrize("swap, epoch", [(False, 0.0), (True, 0.0), (False, 6.0), (True, 6.0)])
def test_cf_hf_step_equals_the_authors_loss(tiny_original, tmp_path, swap, epoch):
    from transformers import CLIPModel

    generator = torch.Generator().manual_seed(0)
    model = BiasAlignedCLIPModel.from_clip(CLIPModel.from_pretrained(tiny_original))
    dimension = model.config.projection_dim
    with torch.no_grad():  # heads far from the identity, so that every term matters
        for parameter in model.bias_alignment.parameters():
            if parameter.dim():
                parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator))
    image, text1, text2 = (torch.randn(ROWS, dimension, generator=generator) for _ in range(3))
    args = _arguments(tmp_path, counterfactual_probability=1.0 if swap else 0.0)
    trainer = BiasAlignmentTrainer(model=model, args=args, train_dataset=BiasAlignmentData(image, text1, text2))
    queues = {tower: FeatureQueue(QUEUE, dimension, "cpu", torch.float32) for tower in ("image", "text")}
    trainer.queues = copy.deepcopy(queues)
    momentum = copy.deepcopy(model.bias_alignment)
    with torch.no_grad():
        for parameter in momentum.parameters():
            if parameter.dim():
                parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))
    # The EMA update before the targets (the authors': at the start of forward) is part of the step.
    trainer.momentum_heads = copy.deepcopy(momentum)
    updated = copy.deepcopy(momentum)
    with torch.no_grad():
        for target, source in zip(updated.parameters(), model.bias_alignment.parameters()):
            target.mul_(0.995).add_(source, alpha=0.005)
    trainer.state.epoch = epoch
    inputs = {"image_features": image, "text_features": text1, "counterfactual_text_features": text2,
              "counterfactual_image_features": image, "has_image_counterfactual": torch.zeros(ROWS, dtype=torch.bool)}
    loss = trainer.compute_loss(model, inputs)
    expected = authors_loss(_weights(model.bias_alignment), _weights(updated), image, text1, text2,
                            queues["image"].embeddings, queues["text"].embeddings, swap, int(epoch))
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    # The queues then hold the batch's original embeddings at the front.
    torch.testing.assert_close(trainer.queues["image"].embeddings[:ROWS], _unit(image))


def test_queues_start_full_of_random_unit_vectors_or_empty_as_an_option():
    torch.manual_seed(0)
    queue = FeatureQueue(65536, 8, "cpu", torch.float32)
    assert queue.filled == 65536 and queue.keys(torch.zeros(2, 8)).shape == (65538, 8)
    torch.testing.assert_close(queue.embeddings.norm(dim=-1), torch.ones(65536))
    assert FeatureQueue(16, 8, "cpu", torch.float32, start="empty").keys(torch.zeros(2, 8)).shape == (2, 8)


def test_the_counterfactual_caption_is_drawn_once_per_batch_by_default(tiny_original, tmp_path):
    from cf_hf.methods.bias_alignment.trainer import counterfactual_mask

    torch.manual_seed(0)
    batch = torch.stack([counterfactual_mask(64, 0.5, "batch", "cpu") for _ in range(50)])
    assert all(row.all() or not row.any() for row in batch) and 0 < batch[:, 0].sum() < 50
    rows = torch.stack([counterfactual_mask(64, 0.5, "row", "cpu") for _ in range(50)])
    assert any(0 < row.sum() < 64 for row in rows)


def _train(tiny_original, tmp_path, steps: int, **overrides):
    from cf_hf.methods.bias_alignment.trainer import train_bias_alignment

    generator = torch.Generator().manual_seed(1)
    dimension = BiasAlignedCLIPModel.config_class.from_pretrained(tiny_original).projection_dim
    data = BiasAlignmentData(*(torch.randn(24, dimension, generator=generator).numpy() for _ in range(3)))
    args = _arguments(tmp_path, max_steps=steps, learning_rate=1e-2, **overrides)
    return BiasAlignedCLIPModel.from_pretrained(train_bias_alignment(tiny_original, data, args))


def test_the_first_optimiser_steps_leave_tau_unchanged_by_default(tiny_original, tmp_path):
    from cf_hf.methods.bias_alignment.trainer import bias_aligned_from

    fresh, _ = bias_aligned_from(tiny_original, _arguments(tmp_path))  # the heads training starts from
    trained = _train(tiny_original, tmp_path, steps=3)
    assert trained.bias_alignment.temperature.item() == torch.tensor(0.07).item()
    assert trained.bias_alignment.temperature.item() == fresh.bias_alignment.temperature.item()
    moved = [not torch.equal(a, b) for a, b in zip(trained.bias_alignment.shared_head.parameters(),
                                                   fresh.bias_alignment.shared_head.parameters())]
    assert any(moved)  # the heads did train
    learned = _train(tiny_original, tmp_path / "learned", steps=3, learn_temperature=True)
    assert learned.bias_alignment.temperature.item() != pytest.approx(0.07, abs=1e-7)
