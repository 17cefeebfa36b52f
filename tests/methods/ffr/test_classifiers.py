"""Classifier training with the From Fake to Real schedules, on tiny models and the world's own data.

The real data is the world's rendered classification set and the synthetic data a real export of
the world's counterfactual generation (with the generator signature), as the experiment uses them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cf_hf.methods.ffr.evaluation import classification_metrics, majority_values, synthetic_probe
from cf_hf.methods.ffr.groupdro import GroupDROLoss
from cf_hf.methods.ffr.trainer import RECORD_KEY, ClassifierTrainingArguments, train_classifier

SIGNATURE = 6.0


@pytest.fixture(scope="module")
def world_data(tmp_path_factory):
    """(real, synthetic pool, held-out generated images) from the world's producers: a biased real
    set (5:1 per profession), a pool of 6 scenes per group (enough for every schedule's counts), and
    the test split of an exported counterfactual dataset with the generator signature."""
    from cf_hf.methods.training_utils import load_training_dataset
    from cf_hf.world import render
    from cf_hf.world.ffr.data import (
        counterfactual_rows,
        real_classification_set,
        render_groups,
        synthetic_dataset,
    )

    folder = tmp_path_factory.mktemp("ffr_world")
    real = real_classification_set(bias=0.8, per_class=6, seed=0)
    pool = render_groups({(profession, gender): 6 for profession in render.PROFESSIONS for gender in render.GENDERS},
                         seed=1)
    exported = synthetic_dataset(folder, seed=1, signature=SIGNATURE, captions_per_concept=1,
                                 decorators_per_caption=2, appearances_per_base=4, test_size=0.5, show_progress=False)
    test = counterfactual_rows(load_training_dataset(str(exported), "test"))
    return real, pool, test


def _args(output_dir, schedule, loss, **overrides):
    values = dict(output_dir=str(output_dir), schedule=schedule, loss=loss, num_train_epochs=1,
                  per_device_train_batch_size=8, learning_rate=1e-3, save_strategy="no", report_to="none",
                  use_cpu=True, disable_tqdm=True, logging_strategy="no", dataloader_num_workers=0)
    values.update(overrides)
    return ClassifierTrainingArguments(**values)


def test_groupdro_weights_move_towards_the_worst_group():
    loss_fn = GroupDROLoss(num_groups=3, step_size=0.5)
    group_ids = torch.tensor([0, 0, 1, 1, 2, 2])
    losses = torch.tensor([0.1, 0.1, 2.0, 2.0, 0.5, 0.5])  # group 1 is the worst
    for _ in range(5):
        loss = loss_fn(losses, group_ids)
    weights = loss_fn.group_weights
    assert weights.argmax().item() == 1 and weights[1] > 0.5
    assert weights[0] < weights[2] < weights[1]
    assert torch.isclose(weights.sum(), torch.tensor(1.0))
    assert torch.isclose(loss, (weights * torch.tensor([0.1, 2.0, 0.5])).sum())


def test_groupdro_evaluation_mode_leaves_the_weights():
    loss_fn = GroupDROLoss(num_groups=2).eval()
    loss_fn(torch.tensor([1.0, 3.0]), torch.tensor([0, 1]))
    assert torch.equal(loss_fn.group_weights, torch.tensor([0.5, 0.5]))


def test_groupdro_names_an_out_of_range_group():
    with pytest.raises(ValueError, match=r"group ids must be in \[0, 2\)"):
        GroupDROLoss(num_groups=2)(torch.tensor([1.0]), torch.tensor([5]))


def test_metrics_on_a_known_prediction():
    labels = ["a", "a", "a", "a", "b", "b", "b", "b"]
    values = ["x", "x", "y", "y", "x", "x", "y", "y"]
    predictions = ["a", "a", "a", "b", "b", "b", "a", "a"]  # a/y half right, b/y all wrong
    metrics = classification_metrics(predictions, labels, values, {"a": "x", "b": "x"})
    assert metrics["worst_group_accuracy"] == 0.0
    assert metrics["balanced_accuracy"] == pytest.approx((1 + 0.5 + 1 + 0) / 4)
    assert metrics["mean_accuracy"] == pytest.approx(5 / 8)
    assert metrics["stereotype_gap"] == pytest.approx(1.0 - 0.25)
    assert majority_values(labels[:3], values[:3]) == {"a": "x"}


def test_probe_finds_a_planted_signature_and_not_an_absent_one():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 16))
    planted = rng.normal(size=(200, 16))
    planted[:, 3] += 4.0  # the signature: a shift along one feature
    assert synthetic_probe(real, planted) > 0.9
    assert synthetic_probe(real, rng.normal(size=(200, 16))) < 0.65


@pytest.mark.parametrize("schedule", ["real", "usb", "asb", "ffr"])
@pytest.mark.parametrize("loss", ["erm", "groupdro"])
def test_schedule_trains_and_records_its_settings(tiny_clip_dir, world_data, tmp_path, schedule, loss):
    real, synthetic, _ = world_data
    output = train_classifier(str(tiny_clip_dir), real, None if schedule == "real" else synthetic,
                              _args(tmp_path / "model", schedule, loss))
    config = json.loads((Path(output) / "config.json").read_text())
    record = config[RECORD_KEY]
    assert record["schedule"] == schedule and record["loss"] == loss
    assert [stage["name"] for stage in record["stages"]] == {
        "real": ["real"], "usb": ["usb"], "asb": ["asb"], "ffr": ["synthetic", "real"]}[schedule]
    assert record["stages"][-1]["loss"] == loss
    assert ("group_weights" in record) == (loss == "groupdro")
    assert config["architectures"] == ["CLIPForImageClassification"]
    card = (Path(output) / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers\n") and f"schedule-{schedule}" in card
    assert "## Differences from the authors' code" in card and "ResNet-50" in card


def test_groupdro_training_moves_weight_to_the_minority_groups(tiny_clip_dir, world_data, tmp_path):
    real, _, _ = world_data
    output = train_classifier(str(tiny_clip_dir), real, None, _args(tmp_path / "model", "real", "groupdro",
                                                                    groupdro_step_size=1.0))
    record = json.loads((Path(output) / "config.json").read_text())[RECORD_KEY]
    assert max(record["group_weights"]) > 1.5 / len(record["group_weights"])


def test_checkpoint_loads_with_plain_transformers_in_a_fresh_process(tiny_clip_dir, world_data, tmp_path):
    real, synthetic, _ = world_data
    output = train_classifier(str(tiny_clip_dir), real, synthetic, _args(tmp_path / "model", "ffr", "erm"))
    code = (
        "import sys, torch\n"
        "from transformers import CLIPForImageClassification, CLIPImageProcessor\n"
        "model = CLIPForImageClassification.from_pretrained(sys.argv[1])\n"
        "processor = CLIPImageProcessor.from_pretrained(sys.argv[1])\n"
        "logits = model(pixel_values=torch.zeros(1, 3, 32, 32)).logits\n"
        "print(logits.shape[1], model.config.id2label[0], model.config.cf_hf_classification['schedule'])\n"
    )
    result = subprocess.run([sys.executable, "-c", code, output], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["8", "doctor", "ffr"]


def test_ffr_reuses_an_identical_stage_one(tiny_clip_dir, world_data, tmp_path):
    real, synthetic, _ = world_data
    stage_dir = tmp_path / "stage-1"
    train_classifier(str(tiny_clip_dir), real, synthetic, _args(tmp_path / "a", "ffr", "erm"),
                     synthetic_stage_dir=stage_dir)
    weights = stage_dir / "model.safetensors"
    written = weights.stat().st_mtime_ns
    train_classifier(str(tiny_clip_dir), real, synthetic, _args(tmp_path / "b", "ffr", "groupdro"),
                     synthetic_stage_dir=stage_dir)
    assert weights.stat().st_mtime_ns == written
    train_classifier(str(tiny_clip_dir), real, synthetic, _args(tmp_path / "c", "ffr", "erm", synthetic_num_train_epochs=2),
                     synthetic_stage_dir=stage_dir)
    assert weights.stat().st_mtime_ns != written  # other stage-1 settings: trained again


def test_missing_group_column_is_named(tiny_clip_dir, world_data, tmp_path):
    real, _, _ = world_data
    with pytest.raises(ValueError, match="real data has no column 'ethnicity'"):
        train_classifier(str(tiny_clip_dir), real, None, _args(tmp_path, "real", "erm", group_column="ethnicity"))


def test_missing_label_column_is_named(tiny_clip_dir, world_data, tmp_path):
    real, synthetic, _ = world_data
    with pytest.raises(ValueError, match="synthetic data has no column 'profession'"):
        train_classifier(str(tiny_clip_dir), real.rename_column("concept", "profession"), synthetic,
                         _args(tmp_path, "ffr", "erm", label_column="profession"))


def test_groupdro_refuses_a_group_without_examples(tiny_clip_dir, world_data, tmp_path):
    real, _, _ = world_data
    labels, genders = np.array(real["concept"]), np.array(real["gender"])
    without = real.select(np.flatnonzero(~((labels == 1) & (genders == 1))))  # no male nurse
    with pytest.raises(ValueError, match="no examples of 1 of its 16.*nurse/male"):
        train_classifier(str(tiny_clip_dir), without, None, _args(tmp_path, "real", "groupdro"))
    train_classifier(str(tiny_clip_dir), without, None, _args(tmp_path / "erm", "real", "erm"))  # ERM is fine


def test_stage_two_with_other_labels_is_refused(tiny_clip_dir, world_data, tmp_path):
    real, synthetic, _ = world_data
    chefs_gone = real.filter(lambda concept: concept != 2, input_columns=["concept"])
    from datasets import ClassLabel

    renamed = chefs_gone.cast_column("concept", ClassLabel(names=[
        name if name != "chef" else "cook" for name in real.features["concept"].names]))
    with pytest.raises(ValueError, match=r"labels only in the synthetic data: \['chef'\]; only in the real data: "
                                         r"\['cook'\]"):
        train_classifier(str(tiny_clip_dir), renamed, synthetic, _args(tmp_path, "ffr", "erm"))


def test_schedule_and_data_must_agree(tiny_clip_dir, world_data, tmp_path):
    real, synthetic, _ = world_data
    with pytest.raises(ValueError, match="needs a synthetic dataset"):
        train_classifier(str(tiny_clip_dir), real, None, _args(tmp_path, "asb", "erm"))
    with pytest.raises(ValueError, match="real data only"):
        train_classifier(str(tiny_clip_dir), real, synthetic, _args(tmp_path, "real", "erm"))


def test_classify_command_trains_evaluates_and_probes(tiny_clip_dir, world_data, tmp_path, capsys):
    from cf_hf.cli import main
    from cf_hf.world.ffr.data import balanced_real_set, real_classification_set

    real, synthetic, held_out = world_data
    for name, data in (("real", real), ("synthetic", synthetic), ("held_out", held_out)):
        data.save_to_disk(str(tmp_path / name))
    balanced_real_set(per_group=3, seed=5).save_to_disk(str(tmp_path / "test"))
    real_classification_set(bias=0.8, per_class=6, seed=6).save_to_disk(str(tmp_path / "validation"))
    output = tmp_path / "model"
    status = main(["classify", "--real_dataset", str(tmp_path / "real"), "--synthetic_dataset",
                   str(tmp_path / "synthetic"), "--model_name_or_path", str(tiny_clip_dir), "--schedule", "ffr",
                   "--loss", "groupdro", "--num_train_epochs", "1", "--per_device_train_batch_size", "8",
                   "--validation_dataset", str(tmp_path / "validation"),
                   "--output_dir", str(output), "--eval_dataset", str(tmp_path / "test"), "--probe_dataset",
                   str(tmp_path / "held_out"), "--report_to", "none", "--save_strategy", "no", "--no_progress"])
    assert status == 0
    results = json.loads((output / "eval_results.json").read_text())
    assert set(results) >= {"worst_group_accuracy", "balanced_accuracy", "mean_accuracy", "stereotype_gap",
                            "probe_accuracy/synthetic"}
    assert 0.0 <= results["probe_accuracy/synthetic"] <= 1.0
    assert "model-index" in (output / "README.md").read_text()


def test_classify_command_reports_a_missing_column_in_one_line(tiny_clip_dir, world_data, tmp_path, capsys):
    from cf_hf.cli import main

    real, _, _ = world_data
    real.save_to_disk(str(tmp_path / "real"))
    status = main(["classify", "--real_dataset", str(tmp_path / "real"), "--model_name_or_path", str(tiny_clip_dir),
                   "--schedule", "real", "--group_column", "race", "--output_dir",
                   str(tmp_path / "model"), "--report_to", "none"])
    assert status == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("cf-hf classify: error: the real data has no column 'race'")


def test_probe_sees_the_worlds_signature_through_a_classifier(tiny_clip_dir):
    from PIL import Image as PILImage
    from transformers import CLIPForImageClassification, CLIPImageProcessor

    from cf_hf.methods.ffr.encoding import GroupSpace, encode_dataset
    from cf_hf.methods.ffr.evaluation import predict
    from cf_hf.world.components import add_signature
    from cf_hf.world.ffr.data import balanced_real_set

    images = balanced_real_set(per_group=6, seed=3)
    model = CLIPForImageClassification.from_pretrained(str(tiny_clip_dir), num_labels=8)
    processor = CLIPImageProcessor.from_pretrained(str(tiny_clip_dir))
    space = GroupSpace(tuple(images.features["concept"].names), tuple(images.features["gender"].names))
    signed = images.map(lambda row: {"image": PILImage.fromarray(add_signature(np.asarray(row["image"]), 12.0))})
    features = {}
    for name, data in (("real", images), ("signed", signed)):
        _, features[name] = predict(model, encode_dataset(data, processor, space, "concept", "gender", name))
    assert synthetic_probe(features["real"], features["signed"]) > 0.9


def test_groupdro_run_resumes_from_its_last_checkpoint_with_its_weights(tiny_clip_dir, world_data, tmp_path):
    real, _, _ = world_data
    output = tmp_path / "model"
    train_classifier(str(tiny_clip_dir), real, None, _args(output, "real", "groupdro", save_strategy="steps",
                                                           save_steps=2, groupdro_step_size=1.0))
    checkpoint = output / "trainer" / "checkpoint-2"
    saved = json.loads((checkpoint / "groupdro_weights.json").read_text())
    assert max(saved) > 1.0 / len(saved)
    resumed = train_classifier(str(tiny_clip_dir), real, None, _args(
        output, "real", "groupdro", save_strategy="steps", save_steps=2, num_train_epochs=2, groupdro_step_size=1.0,
        resume_from_checkpoint="last"))
    record = json.loads((Path(resumed) / "config.json").read_text())[RECORD_KEY]
    assert (output / "trainer" / "checkpoint-12").is_dir()
    assert record["group_weights"] != [1.0 / len(saved)] * len(saved)


def test_stage_one_of_another_backbone_is_not_reused(tiny_clip_dir, world_data, tmp_path):
    import shutil

    real, synthetic, _ = world_data
    other = tmp_path / "other_clip"
    shutil.copytree(tiny_clip_dir, other)
    stage_dir = tmp_path / "stage-1"
    train_classifier(str(tiny_clip_dir), real, synthetic, _args(tmp_path / "a", "ffr", "erm"),
                     synthetic_stage_dir=stage_dir)
    written = (stage_dir / "model.safetensors").stat().st_mtime_ns
    output = train_classifier(str(other), real, synthetic, _args(tmp_path / "b", "ffr", "erm"),
                              synthetic_stage_dir=stage_dir)
    assert (stage_dir / "model.safetensors").stat().st_mtime_ns != written
    record = json.loads((Path(output) / "config.json").read_text())[RECORD_KEY]
    assert record["base_model"] == str(other)
    assert [stage["starts_from"] for stage in record["stages"]] == [str(other), "the synthetic stage"]


def test_classify_refuses_evaluation_labels_the_training_data_lacks_before_training(tiny_clip_dir, world_data,
                                                                                    tmp_path, capsys):
    from cf_hf.cli import main
    from cf_hf.methods.ffr.encoding import column_strings
    from cf_hf.methods.ffr.trainer import DEFAULT_LABEL_COLUMN

    real, _, _ = world_data
    labels = column_strings(real, DEFAULT_LABEL_COLUMN, "real data")
    left_out = sorted(set(labels))[0]
    real.select([row for row, label in enumerate(labels) if label != left_out]).save_to_disk(str(tmp_path / "real"))
    real.save_to_disk(str(tmp_path / "test"))
    status = main(["classify", "--real_dataset", str(tmp_path / "real"), "--model_name_or_path", str(tiny_clip_dir),
                   "--schedule", "real", "--num_train_epochs", "1", "--output_dir", str(tmp_path / "model"),
                   "--eval_dataset", str(tmp_path / "test"), "--eval_split", "train", "--report_to", "none"])
    assert status == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("cf-hf classify: error: --eval_dataset") and repr(left_out) in error
    assert not (tmp_path / "model" / "model.safetensors").exists()
