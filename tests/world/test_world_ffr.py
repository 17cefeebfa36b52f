"""The world's generator signature and the From Fake to Real experiment's data and runs."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import numpy as np
import pytest

from cf_hf.generation.interfaces import ImageRequest, InpaintRequest, component_provenance
from cf_hf.world import render
from cf_hf.world.components import WorldInpainter, WorldSegmenter, WorldTextToImage, add_signature
from cf_hf.world.corpus import STEREOTYPES

# Digests of the two requests below as drawn before the signature option existed: the default
# (signature off) must keep every demo image, hence every demo result, unchanged.
BASE_DIGEST = "69a755a1a5093c477a6ccdc1d6f5b26cdb01e9cb2bce80345e361ee123e1dc47"
COUNTERFACTUAL_DIGEST = "92a2b7bf921d25874e6e35dbb1029f05a115c5e5333c13f723331f4122370689"


def _draw(text_to_image, inpainter):
    requests = [ImageRequest(concept="nurse", caption="a nurse", prompt="a nurse", seed=seed) for seed in (3, 11)]
    images = text_to_image(requests)
    masks = WorldSegmenter()(images)
    counterfactuals = inpainter([
        InpaintRequest(image=image, mask=mask.astype(np.float32), appearance={"gender": "male", "skin_tone": "dark"},
                       prompt="", caption="a nurse", concept="nurse", seed=5)
        for image, mask in zip(images, masks)
    ])  # fmt: skip
    return images, masks, counterfactuals


def _digest(images) -> str:
    return hashlib.sha256(b"".join(np.asarray(image).tobytes() for image in images)).hexdigest()


def test_signature_off_by_default_draws_what_the_world_drew_before():
    images, _, counterfactuals = _draw(WorldTextToImage(), WorldInpainter())
    assert _digest(images) == BASE_DIGEST
    assert _digest(counterfactuals) == COUNTERFACTUAL_DIGEST
    # and the run fingerprint of a default run is unchanged: the class name, as before
    assert component_provenance(WorldInpainter()) == {"class": "cf_hf.world.components.WorldInpainter"}


def test_signature_marks_the_repainted_region_only():
    base_images, masks, plain = _draw(WorldTextToImage(), WorldInpainter())
    _, _, signed = _draw(WorldTextToImage(), WorldInpainter(signature=4.0))
    for mask, before, after in zip(masks, plain, signed):
        changed = (np.asarray(before) != np.asarray(after)).any(axis=-1)
        assert changed.any() and not (changed & ~mask).any()
        assert np.abs(np.asarray(before, dtype=int) - np.asarray(after, dtype=int)).max() <= 4


def test_signature_on_the_text_to_image_is_a_faint_whole_image_texture():
    plain = np.asarray(WorldTextToImage()([ImageRequest("chef", "a chef", "a chef", seed=2)])[0], dtype=int)
    signed = np.asarray(WorldTextToImage(signature=2.0)([ImageRequest("chef", "a chef", "a chef", seed=2)])[0],
                        dtype=int)
    difference = signed - plain
    assert np.abs(difference).max() <= 2 and (difference != 0).mean() > 0.9
    assert component_provenance(WorldTextToImage(signature=2.0))["signature"] == "2.0"


def test_negative_signature_is_refused():
    with pytest.raises(ValueError, match="signature strength must be >= 0"):
        WorldInpainter(signature=-1.0)
    with pytest.raises(ValueError, match="signature strength must be >= 0"):
        add_signature(np.zeros((2, 2, 3), dtype=np.uint8), -0.5)


def test_real_set_has_the_bias_level_exactly_and_every_group():
    from cf_hf.world.ffr.data import real_classification_set

    data = real_classification_set(bias=0.9, per_class=20, seed=0)
    counts = Counter(zip(data["concept"], data["gender"]))
    for index, profession in enumerate(render.PROFESSIONS):
        stereotyped = render.GENDERS.index(STEREOTYPES[profession].gender)
        assert counts[(index, stereotyped)] == 18 and counts[(index, 1 - stereotyped)] == 2


def test_extreme_bias_keeps_one_minority_example():
    from cf_hf.world.ffr.data import minority_count

    assert minority_count(500, 0.999) == 1
    assert minority_count(500, 0.95) == 25
    with pytest.raises(ValueError, match="bias must be in"):
        minority_count(500, 1.0)


def test_bias_subsets_are_cut_from_one_pool():
    from cf_hf.world.ffr.data import render_groups
    from cf_hf.world.ffr.experiment import FFRConfig, biased_subset, real_pool_counts

    config = FFRConfig(bias_levels=[0.8, 0.95], per_class=20)
    pool = render_groups(real_pool_counts(config), seed=0)
    low, high = biased_subset(pool, 20, 0.8), biased_subset(pool, 20, 0.95)
    assert len(low) == len(high) == 160
    for subset, minority in ((low, 4), (high, 1)):
        counts = Counter(zip(subset["concept"], subset["gender"]))
        assert sorted(counts.values()) == [minority] * 8 + [20 - minority] * 8



def test_experiment_runs_tabulates_and_resumes(tmp_path):
    from cf_hf.world.ffr.experiment import FFRConfig, read_results, run_experiment

    config = FFRConfig(bias_levels=[0.75], signatures=[0.0, 4.0], schedules=["real", "ffr"], losses=["groupdro"],
                       seeds=[0], per_class=4, validation_per_class=4, validation_min_minority=1, test_per_group=3,
                       epochs=1, synthetic_epochs=1, batch_size=8, captions_per_concept=1, decorators_per_caption=4,
                       appearances_per_base=8)
    results = run_experiment(config, tmp_path, quiet=True)
    cells = [row for row in results if "schedule" in row]
    assert sorted((row["schedule"], row["signature"]) for row in cells) == [
        ("ffr", 0.0), ("ffr", 4.0), ("real", 0.0), ("real", 4.0)]
    assert all(0.0 <= row["worst_group_accuracy"] <= row["balanced_accuracy"] <= 1.0 for row in cells)
    report = (tmp_path / "ffr_report.md").read_text()
    assert "| 75% | on (4) | ffr | groupdro |" in report
    run_experiment(config, tmp_path, quiet=True)  # everything done: nothing is trained again
    assert read_results(tmp_path) == results
    assert json.loads((tmp_path / "config.json").read_text())["per_class"] == 4


def test_resume_keys_change_with_every_setting_that_changes_a_result():
    from dataclasses import fields, replace

    from cf_hf.world.ffr.experiment import CELL_FIELDS, FFRConfig, settings_digest

    config = FFRConfig()
    assert settings_digest(replace(config, seeds=[5], schedules=["ffr"])) == settings_digest(config)
    for setting in fields(FFRConfig):
        if setting.name in CELL_FIELDS:
            continue
        value = getattr(config, setting.name)
        changed = replace(config, **{setting.name: value * 2})
        assert settings_digest(changed) != settings_digest(config), setting.name


def test_validation_set_is_biased_like_training_with_ten_minority_images():
    from cf_hf.world.ffr.experiment import FFRConfig, validation_counts

    config = FFRConfig()
    counts = validation_counts(config, 0.999)
    assert sorted(set(counts.values())) == [10, config.validation_per_class - 10]
    assert validation_counts(config, 0.5)[("doctor", "female")] == 32
    with pytest.raises(ValueError, match="validation_per_class=10 leaves no stereotyped images"):
        validation_counts(FFRConfig(validation_per_class=10), 0.999)


def test_readme_describes_the_experiment_as_configured():
    from pathlib import Path

    from cf_hf.world.ffr.experiment import DEFAULT_SIGNATURE, FFRConfig

    readme = " ".join((Path(__file__).resolve().parents[2] / "docs" / "classify.md").read_text(encoding="utf-8").split())
    config = FFRConfig()
    expected = [
        f"its {config.per_class} images", f"{config.epochs:g} epochs per stage",
        f"{config.synthetic_epochs:g} epochs of ffr's stage 1", f"{config.validation_per_class} real images per profession",
        f"batch {config.batch_size}, learning rate {config.learning_rate:.0e}".replace("e-0", "e-"),
        f"s = {DEFAULT_SIGNATURE:g}", f"{config.test_per_group} real images per (profession, gender)",
        f"η = {config.groupdro_step_size}",
    ]  # fmt: skip
    missing = [phrase for phrase in expected if phrase not in readme]
    assert not missing, f"docs/classify.md's ffr-demo paragraph does not match FFRConfig(): {missing}"
