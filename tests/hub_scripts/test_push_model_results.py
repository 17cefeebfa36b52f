"""`cf-hf push model --results`: the numbers on the cards are those of the pushed weights. `cf-hf evaluate`
records each sweep member's weights (α and the endpoints' fingerprints), so that another sweep's results
are refused, and the sweep's own accepted, wherever the folders have moved since."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from testing_utils.evaluation import make_fairface

from cf_hf.cli import main
from cf_hf.evaluation.results import SWEEP_MEMBER_FIELD


def _perturbed_sweep(tiny_clip_dir: Path, folder: Path, seed: int) -> Path:
    """A sweep (α = 0, 0.5) between the tiny CLIP and a randomly perturbed copy of it."""
    import torch
    from transformers import CLIPModel, CLIPProcessor

    from cf_hf.interpolation import interpolate_sweep

    finetuned = CLIPModel.from_pretrained(tiny_clip_dir)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in finetuned.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    finetuned.save_pretrained(folder / "finetuned")
    CLIPProcessor.from_pretrained(tiny_clip_dir).save_pretrained(folder / "finetuned")
    interpolate_sweep(tiny_clip_dir, folder / "finetuned", [0.0, 0.5], folder / "sweep")
    return folder / "sweep"


def _evaluate(sweep: Path, fairface: Path, output_dir: Path) -> Path:
    """results.json of `cf-hf evaluate --sweep` on a tiny FairFace-format gallery."""
    assert main(["evaluate", "--sweep", str(sweep), "--fairface", str(fairface), "--concepts", "doctor", "nurse",
                 "--k", "12", "--output_dir", str(output_dir), "--cache_dir", "none", "--no_progress"]) == 0
    return output_dir / "results.json"


@pytest.fixture(scope="module")
def sweeps(tiny_clip_dir, tmp_path_factory):
    """Two sweeps from other fine-tuned weights, each with the results the evaluation harness wrote for it."""
    root = tmp_path_factory.mktemp("push_results")
    fairface = make_fairface(root / "fairface", n=24)
    made = {}
    for name, seed in (("a", 1), ("b", 2)):
        sweep = _perturbed_sweep(tiny_clip_dir, root / name, seed)
        made[name] = (sweep, _evaluate(sweep, fairface, root / f"{name}-evaluation"))
    return made


def _push(sweep: Path, results: Path) -> list[str]:
    return ["push", "model", str(sweep), "--repo_id", "org/cf-clip", "--results", str(results),
            "--base_model", "org/clip", "--dry_run"]


def _one_line_refusal(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_the_evaluation_harness_records_the_weights_of_each_sweep_member(sweeps):
    sweep, results = sweeps["a"]
    models = json.loads(results.read_text())["models"]
    interpolation = json.loads((sweep / "alpha-0.5" / "interpolation.json").read_text())
    assert models["alpha=0.5"]["model"][SWEEP_MEMBER_FIELD] == {"alpha": 0.5, "fingerprints": interpolation["fingerprints"]}


def test_results_of_another_sweep_are_refused_while_its_folders_exist(sweeps, capsys):
    pushed, _ = sweeps["a"]
    other, other_results = sweeps["b"]
    err = _one_line_refusal(capsys, _push(pushed, other_results))
    assert "α = 0.5 were measured on" in err and str(other / "alpha-0.5") in err and "finetuned weights sha256" in err


def test_results_of_another_sweep_are_refused_after_its_folders_are_gone(sweeps, tmp_path, capsys):
    pushed, _ = sweeps["a"]
    other, other_results = sweeps["b"]
    moved_away = tmp_path / "elsewhere"
    shutil.move(other, moved_away)  # the other sweep's recorded paths no longer exist
    try:
        err = _one_line_refusal(capsys, _push(pushed, other_results))
    finally:
        shutil.move(moved_away, other)
    assert "α = 0.5 were measured on" in err and "other weights" in err


def test_the_sweeps_own_results_are_accepted_after_both_moved(sweeps, tmp_path):
    sweep, results = sweeps["a"]
    moved_sweep, moved_results = tmp_path / "moved-sweep", tmp_path / "moved-results.json"
    shutil.move(sweep, moved_sweep)
    shutil.copyfile(results, moved_results)
    try:
        recorded = json.loads(moved_results.read_text())["models"]["alpha=0.5"]["model"]["path"]
        assert not Path(recorded).exists()  # the recorded paths name the folder before the move
        assert main(_push(moved_sweep, moved_results)) == 0
    finally:
        shutil.move(moved_sweep, sweep)


def test_results_without_recorded_weights_whose_checkpoint_is_gone_are_refused_clearly(sweeps, tmp_path, capsys):
    pushed, results = sweeps["a"]
    old = json.loads(results.read_text())
    for entry in old["models"].values():
        entry["model"].pop(SWEEP_MEMBER_FIELD, None)
        entry["model"]["path"] = str(tmp_path / "deleted" / Path(entry["model"]["path"]).name)
    old_results = tmp_path / "old-results.json"
    old_results.write_text(json.dumps(old))
    err = _one_line_refusal(capsys, _push(pushed, old_results))
    assert "records no weight fingerprint for α = 0 " in err and "is gone" in err
    assert "Evaluate the pushed sweep again" in err
