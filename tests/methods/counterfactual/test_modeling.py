"""CounterfactualCLIPModel: its loss, and checkpoints that are plain CLIP checkpoints."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from transformers import CLIPModel

from cf_hf.methods.counterfactual.losses import NoPositivesError, clip_loss, counterfactual_loss
from cf_hf.methods.counterfactual.modeling import CounterfactualCLIPModel

GROUP_IDS = torch.tensor([0, 0, 1, 1, 2, 2])


@pytest.fixture(scope="module")
def batch(tiny_clip_dir):
    from transformers import CLIPProcessor

    processor = CLIPProcessor.from_pretrained(tiny_clip_dir)
    captions = ["a photo of a doctor", "a photo of a doctor", "a chef", "a chef", "a nurse at work", "a nurse"]
    text = processor.tokenizer(captions, padding=True, return_tensors="pt")
    pixel_values = torch.randn(len(captions), 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return {"input_ids": text["input_ids"], "attention_mask": text["attention_mask"], "pixel_values": pixel_values}


def test_loss_is_the_beta_weighted_sum_of_both_terms(tiny_clip_dir, batch):
    model = CounterfactualCLIPModel.from_pretrained(tiny_clip_dir)
    model.config.beta_clip, model.config.beta_cf, model.config.cf_temperature = 0.7, 0.3, 0.2
    outputs = model(**batch, group_ids=GROUP_IDS, return_loss=True)
    scale = model.logit_scale.exp()
    expected = 0.7 * clip_loss(outputs.image_embeds, outputs.text_embeds, scale, GROUP_IDS) + 0.3 * counterfactual_loss(
        outputs.image_embeds, GROUP_IDS, 0.2
    )
    assert outputs.loss.item() == pytest.approx(expected.item(), abs=1e-6)


def test_without_cf_term_and_groups_the_loss_is_clip_models(tiny_clip_dir, batch):
    model = CounterfactualCLIPModel.from_pretrained(tiny_clip_dir)
    model.config.beta_cf = 0.0
    plain = CLIPModel.from_pretrained(tiny_clip_dir)
    expected = plain(**batch, return_loss=True).loss
    assert model(**batch, return_loss=True).loss.item() == pytest.approx(expected.item(), abs=1e-6)


def test_gradients_reach_both_towers_and_the_temperature(tiny_clip_dir, batch):
    model = CounterfactualCLIPModel.from_pretrained(tiny_clip_dir)
    model(**batch, group_ids=GROUP_IDS, return_loss=True).loss.backward()
    for parameter in (model.visual_projection.weight, model.text_projection.weight, model.logit_scale):
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0


def test_batch_without_positives_raises_in_training_and_gives_zero_cf_in_evaluation(tiny_clip_dir, batch):
    model = CounterfactualCLIPModel.from_pretrained(tiny_clip_dir)
    model.config.beta_clip = 0.0
    singletons = torch.arange(6)
    model.train()
    with pytest.raises(NoPositivesError):
        model(**batch, group_ids=singletons, return_loss=True)
    model.eval()
    assert model(**batch, group_ids=singletons, return_loss=True).loss.item() == 0.0


# Runs in a fresh interpreter: loads with transformers only and proves cf_hf was never imported.
_LOAD_AS_PLAIN_CLIP = """
import sys, torch
from transformers import CLIPModel
path, batch_path, out_path = sys.argv[1:]
model = CLIPModel.from_pretrained(path).eval()
batch = torch.load(batch_path)
with torch.no_grad():
    out = model(**batch)
assert not any(name.split(".")[0] == "cf_hf" for name in sys.modules), "cf_hf was imported"
torch.save({"image": out.image_embeds, "text": out.text_embeds}, out_path)
"""


def test_saved_checkpoint_loads_as_plain_clip_without_cf_hf(tiny_clip_dir, batch, tmp_path):
    model = CounterfactualCLIPModel.from_pretrained(tiny_clip_dir).eval()
    model.config.beta_cf = 0.5
    model.save_pretrained(tmp_path / "checkpoint")
    config = json.loads((tmp_path / "checkpoint" / "config.json").read_text())
    assert config["architectures"] == ["CLIPModel"] and config["model_type"] == "clip"
    torch.save(batch, tmp_path / "batch.pt")
    subprocess.run(
        [sys.executable, "-c", _LOAD_AS_PLAIN_CLIP, str(tmp_path / "checkpoint"), str(tmp_path / "batch.pt"),
         str(tmp_path / "embeds.pt")],
        check=True,
        cwd=tmp_path,  # not the repository root, so nothing can pick up the source tree by accident
    )
    loaded = torch.load(tmp_path / "embeds.pt")
    with torch.no_grad():
        expected = model(**batch)
    assert torch.equal(loaded["image"], expected.image_embeds)
    assert torch.equal(loaded["text"], expected.text_embeds)
