"""Reference tests of From Fake to Real's schedules, groups, GroupDRO update and model selection.

Each reference is an independent computation written here from the paper and the authors' code
(`mqraitem/From-Fake-to-Real`: `datasets/dataset.py` `load_gen_data_balance` and `load_gen_data`,
`train_erm_asb.py`/`train_erm_ffr_1.py` `num_per_group`, `group_idx_real_gen`, `utils.py`
`DROLossComputer.compute_robust_loss`, `trainer.py` keeping the best validation `worst_acc`), not a
call into cf_hf; cf_hf's result must equal it exactly (counts) or to 1e-6 (losses).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from cf_hf.methods.ffr.groupdro import GroupDROLoss
from cf_hf.methods.ffr.schedules import select_synthetic, source_group_ids, synthetic_counts
from cf_hf.methods.ffr.trainer import RECORD_KEY, ClassifierTrainingArguments, train_classifier
from cf_hf.world import render

COUNT_CASES = [
    [90, 10, 5, 95],  # two classes, two attribute values, opposite majorities
    [499, 1, 1, 499, 250, 250],  # one balanced class among biased ones
    [7, 3, 0, 12, 12, 1],  # an empty group, three attribute values
]


def reference_counts(real_counts: list[int]) -> dict[str, list[int]]:
    """The authors' numbers, group by group: USB tops each group up to the largest group
    (`to_add = int(max_count - group_count)`), ASB and FFR stage 1 take `num_gen // len(GROUPS)`
    per group, num_gen being USB's total."""
    largest = max(real_counts)
    usb = []
    for count in real_counts:
        usb.append(int(largest - count))
    num_per_group = sum(usb) // len(real_counts)
    return {"usb": usb, "asb": [num_per_group] * len(real_counts), "ffr": [num_per_group] * len(real_counts)}


@pytest.mark.parametrize("real_counts", COUNT_CASES)
@pytest.mark.parametrize("schedule", ["usb", "asb", "ffr"])
def test_synthetic_counts_equal_the_authors(real_counts, schedule):
    names = [f"group-{index}" for index in range(len(real_counts))]
    assert synthetic_counts(schedule, real_counts, names).tolist() == reference_counts(real_counts)[schedule]


@pytest.mark.parametrize("schedule", ["usb", "asb", "ffr"])
def test_no_under_represented_group_is_refused_by_name(schedule):
    with pytest.raises(ValueError, match=rf"schedule '{schedule}'.*no group of the real data is under-represented: "
                                         r"all 4 groups \(a/x, a/y, b/x, b/y\) have 5 images; use --schedule real"):
        synthetic_counts(schedule, [5, 5, 5, 5], ["a/x", "a/y", "b/x", "b/y"])


def test_select_synthetic_takes_the_first_rows_of_each_group():
    group_ids = [1, 0, 1, 1, 0, 2, 1]
    assert select_synthetic(group_ids, [1, 2, 0], ["a", "b", "c"], "synthetic data").tolist() == [0, 1, 2]


def test_select_synthetic_names_the_groups_it_cannot_fill():
    with pytest.raises(ValueError, match="synthetic data has too few images for 1 groups: c needs 2, has 1"):
        select_synthetic([0, 0, 2], [1, 0, 2], ["a", "b", "c"], "synthetic data")


def test_groups_with_real_or_generated_equal_the_authors():
    group_ids = np.array([3, 0, 0, 3, 1, 0, 3, 2])
    is_synthetic = np.array([0, 0, 1, 1, 1, 0, 0, 0], dtype=bool)
    triples = list(zip(group_ids.tolist(), is_synthetic.tolist()))
    # The authors number the (class, attribute, real-or-generated) triples present; any numbering
    # of the same partition gives the same GroupDRO and resampling.
    reference = {triple: index for index, triple in enumerate(dict.fromkeys(triples))}
    compact, present = source_group_ids(group_ids, is_synthetic, num_groups=4)
    assert len(present) == len(reference) == 6
    same_partition = {(a, b) for a, b in zip(compact.tolist(), [reference[triple] for triple in triples])}
    assert len(same_partition) == len(reference)
    assert present == sorted(group + 4 * source for group, source in reference)


def reference_groupdro(batches, num_groups: int, step_size: float) -> tuple[list[float], list[float]]:
    """Sagawa et al.'s update as the authors' `compute_robust_loss` runs it (no adjustment, no
    normalisation), in plain Python: per batch the mean loss of each group (0 when absent),
    q_g <- q_g exp(η loss_g), q <- q / Σq, loss = Σ_g q_g loss_g."""
    weights = [1.0 / num_groups] * num_groups
    robust_losses = []
    for losses, group_ids in batches:
        group_losses = []
        for group in range(num_groups):
            members = [loss for loss, group_id in zip(losses, group_ids) if group_id == group]
            group_losses.append(sum(members) / len(members) if members else 0.0)
        weights = [weight * math.exp(step_size * loss) for weight, loss in zip(weights, group_losses)]
        total = sum(weights)
        weights = [weight / total for weight in weights]
        robust_losses.append(sum(weight * loss for weight, loss in zip(weights, group_losses)))
    return robust_losses, weights


def test_groupdro_update_equals_the_formula():
    rng = np.random.default_rng(0)
    batches = [(rng.uniform(0, 3, size=12).tolist(), rng.integers(0, 5, size=12).tolist()) for _ in range(6)]
    batches.append(([0.5, 2.0], [0, 0]))  # a batch with most groups absent
    expected_losses, expected_weights = reference_groupdro(batches, num_groups=5, step_size=0.3)
    module = GroupDROLoss(num_groups=5, step_size=0.3).double()
    for (losses, group_ids), expected in zip(batches, expected_losses):
        value = module(torch.tensor(losses, dtype=torch.float64), torch.tensor(group_ids))
        assert abs(value.item() - expected) < 1e-6
    assert np.allclose(module.group_weights.numpy(), expected_weights, atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def world_sets():
    """(real training set 5:1 per profession, equal synthetic pool of 6 per group, validation set)."""
    from cf_hf.world.ffr.data import real_classification_set, render_groups

    real = real_classification_set(bias=0.8, per_class=6, seed=0)
    pool = render_groups({(profession, gender): 6 for profession in render.PROFESSIONS for gender in render.GENDERS},
                         seed=1)
    validation = real_classification_set(bias=0.8, per_class=6, seed=2)
    return real, pool, validation


def _args(output_dir, schedule, loss="erm", **overrides):
    values = dict(output_dir=str(output_dir), schedule=schedule, loss=loss, num_train_epochs=1,
                  per_device_train_batch_size=16, learning_rate=1e-3, save_strategy="no", report_to="none",
                  use_cpu=True, disable_tqdm=True, logging_strategy="no", dataloader_num_workers=0)
    values.update(overrides)
    return ClassifierTrainingArguments(**values)


def _record(folder) -> dict:
    return json.loads((Path(folder) / "config.json").read_text())[RECORD_KEY]


def _group_counts(dataset) -> list[int]:
    """Real images per (profession, gender) group, in GroupSpace order (profession-major)."""
    counts = Counter(zip(dataset["concept"], dataset["gender"]))
    return [counts[(label, value)] for label in range(len(render.PROFESSIONS)) for value in range(len(render.GENDERS))]


@pytest.mark.parametrize("schedule", ["usb", "asb", "ffr"])
def test_trained_schedule_uses_the_authors_group_counts(tiny_clip_dir, world_sets, tmp_path, schedule):
    real, pool, _ = world_sets
    real_counts = _group_counts(real)
    synthetic = reference_counts(real_counts)[schedule]
    record = _record(train_classifier(str(tiny_clip_dir), real, pool, _args(tmp_path / "model", schedule, "groupdro")))
    first = record["stages"][0]
    assert [count for _, count in first["synthetic_per_group"]] == synthetic
    assert first["synthetic_per_group"][0][0] == "doctor/female"
    if schedule == "ffr":
        assert first["group_counts"] == synthetic and first["loss"] == "erm"
        assert record["stages"][1]["group_counts"] == real_counts and len(record["stages"][1]["groups"]) == 16
        return
    # (class, attribute, real-or-generated): every real group, and the generated ones added to
    reference = {(group, "real"): count for group, count in enumerate(real_counts) if count}
    reference.update({(group, "generated"): count for group, count in enumerate(synthetic) if count})
    assert len(first["groups"]) == len(record["group_weights"]) == len(reference)
    assert sorted(first["group_counts"]) == sorted(reference.values())
    assert first["examples"] == sum(real_counts) + sum(synthetic)
    assert first["groups"][0] == "doctor/female/real" and first["groups"][-1].endswith("/generated")


def test_each_stage_keeps_its_best_validation_epoch(tiny_clip_dir, world_sets, tmp_path):
    from cf_hf.methods.ffr.evaluation import evaluate_checkpoint

    real, pool, validation = world_sets
    output = train_classifier(str(tiny_clip_dir), real, pool, _args(tmp_path / "model", "ffr", num_train_epochs=4,
                                                                     learning_rate=3e-3),
                              validation_dataset=validation)
    record = _record(output)
    stereotypes = {name: "male" for name in render.PROFESSIONS}  # only the worst group is read
    for stage, folder in zip(record["stages"], [tmp_path / "model" / "synthetic-stage", Path(output)]):
        selection = stage["selection"]
        per_epoch = selection["validation_worst_group_accuracy_per_epoch"]
        assert len(per_epoch) == 4
        assert selection["epoch"] == int(np.argmax(per_epoch)) + 1  # the first of equals, as `>` keeps it
        kept = evaluate_checkpoint(folder, validation, stereotypes, "concept", "gender")
        assert kept["worst_group_accuracy"] == pytest.approx(selection["validation_worst_group_accuracy"])
    assert "epoch" in (Path(output) / "README.md").read_text()


def test_validation_without_a_group_is_refused_by_name(tiny_clip_dir, world_sets, tmp_path):
    real, _, validation = world_sets
    labels, genders = np.array(validation["concept"]), np.array(validation["gender"])
    without = validation.select(np.flatnonzero(~((labels == 0) & (genders == 1))))  # no male doctor
    with pytest.raises(ValueError, match="validation data has no examples of 1 of its 16.*doctor/male; the "
                                         "worst-group accuracy that selects the kept epoch needs every group"):
        train_classifier(str(tiny_clip_dir), real, None, _args(tmp_path, "real"), validation_dataset=without)


def test_max_steps_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="max_steps=5: the schedules train whole epochs"):
        _args(tmp_path, "real", max_steps=5)


def test_the_old_schedule_name_mixed_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"schedule must be one of \('real', 'usb', 'asb', 'ffr'\), got 'mixed'"):
        _args(tmp_path, "mixed")
