"""End to end: `cf-hf demo --quick` runs every stage and writes loadable artefacts with a reduction."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # starts several processes, a server or the demo

ATTRIBUTES = ("gender", "skin_tone", "age")


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    """The quick demo, run once as the command line runs it (its own process, offline)."""
    output_dir = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    completed = subprocess.run(
        [sys.executable, "-m", "cf_hf.cli", "demo", "--quick", "--quiet", "--output_dir", str(output_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return output_dir, completed.stdout


def test_quick_demo_prints_the_table(quick_demo):
    _, stdout = quick_demo
    assert "| original |" in stdout and "chosen α" in stdout


def test_quick_demo_results_hold_every_model_and_number(quick_demo):
    from cf_hf.evaluation.results import load_results

    output_dir, _ = quick_demo
    results = json.loads((output_dir / "results.json").read_text())
    alphas = [0.0, 0.5, 1.0]
    keys = ["original"] + [f"alpha={alpha:g}" for alpha in alphas]
    for key in keys:
        for attribute in ATTRIBUTES:
            assert set(results["models"][key][attribute]) == {"max_skew", "min_skew", "ndkl"}
        assert 0.0 <= results["models"][key]["zero_shot_accuracy"] <= 1.0
        assert 0.0 <= results["models"][key]["recall_at_5"] <= 1.0
    # The one results schema: the reader every consumer uses sees the sweep, its α's and the k.
    read = load_results(output_dir / "results.json")
    assert read.schema_version == 1 and list(read.sweep()) == keys
    assert [model.alpha for model in read.sweep().values()] == [None, *alphas]
    assert {model.fairness_k for model in read.models.values()} == {50}
    assert results["chosen_alpha"] in alphas
    assert results["wall_time_seconds"] > 0 and results["peak_memory_mb"] > 0
    assert set(results["random_floor"]) == set(ATTRIBUTES)


def test_quick_demo_alpha_zero_is_the_original(quick_demo):
    output_dir, _ = quick_demo
    results = json.loads((output_dir / "results.json").read_text())
    for attribute in ATTRIBUTES:
        assert results["models"]["alpha=0"][attribute] == pytest.approx(results["models"]["original"][attribute],
                                                                         abs=1e-6)


def test_quick_demo_fine_tuning_reduces_the_skew(quick_demo):
    output_dir, _ = quick_demo
    results = json.loads((output_dir / "results.json").read_text())
    before = sum(results["models"]["original"][attribute]["max_skew"] for attribute in ATTRIBUTES)
    after = sum(results["models"]["alpha=1"][attribute]["max_skew"] for attribute in ATTRIBUTES)
    assert after < before


def test_quick_demo_chooses_an_alpha_that_cuts_every_max_skew(quick_demo):
    # On every machine and seed (docs/reproducibility.md): measured here, 14-32% per attribute.
    output_dir, _ = quick_demo
    results = json.loads((output_dir / "results.json").read_text())
    assert results["chosen_alpha"] > 0
    assert results["config"]["original"]["source"] == "shipped"
    chosen = results["models"][f"alpha={results['chosen_alpha']:g}"]
    for attribute in ATTRIBUTES:
        assert chosen[attribute]["max_skew"] < results["models"]["original"][attribute]["max_skew"], attribute


def test_quick_demo_artefacts_load_with_the_standard_libraries(quick_demo):
    import datasets
    from transformers import CLIPModel, CLIPProcessor

    output_dir, _ = quick_demo
    dataset = datasets.load_dataset(
        str(output_dir / "seed-0" / "dataset"), split="train", cache_dir=str(output_dir / "test_cache")
    )
    assert {"image", "caption", "group_id", "gender", "skin_tone", "age"} <= set(dataset.column_names)
    checkpoint = output_dir / "seed-0" / "sweep" / "alpha-0.5"
    CLIPModel.from_pretrained(checkpoint)
    CLIPProcessor.from_pretrained(checkpoint)
    card = (checkpoint / "README.md").read_text()
    assert "α = 0.5" in card
    # The card carries the demo's numbers for this α (means over seeds) in text and model-index.
    measured = json.loads((output_dir / "results.json").read_text())["models"]["alpha=0.5"]
    assert f"| {measured['gender']['max_skew']:.4g} |" in card.split("## Results")[1]
    assert "model-index" in card and "MaxSkew@50 (gender)" in card
    # The card names the original by its path relative to the checkpoint, never a machine path.
    assert "`../../../original`" in card and str(output_dir) not in card
    assert (checkpoint / "../../../original" / "config.json").is_file()
    report = (output_dir / "report.md").read_text()
    assert "## Targets" in report and (output_dir / "plots" / "alpha_sweep.png").is_file()


def test_unbalanced_ablation_keeps_scenes_and_draws_stereotyped_appearances(quick_demo):
    """The "unbalanced counterfactuals" ablation: same rows, groups, captions and decorators; the
    counterfactuals' people drawn from the web corpus's biased distribution instead of the grid."""
    import datasets

    from cf_hf.world.corpus import STEREOTYPES
    from cf_hf.world.demo.ablations import unbalanced_dataset
    from cf_hf.world.demo.stages import decorator_columns

    output_dir, _ = quick_demo
    dataset = datasets.load_dataset(
        str(output_dir / "seed-0" / "dataset"), split="train", cache_dir=str(output_dir / "test_cache")
    )
    probability = {attribute: 0.85 for attribute in ATTRIBUTES}
    unbalanced = unbalanced_dataset(dataset, seed=0, stereotype_probability=probability)
    assert len(unbalanced) == len(dataset)
    for column in ("caption", "group_id", *decorator_columns()):
        assert unbalanced[column] == dataset[column]
    concept_names = dataset.features["concept"].names
    rows = [row for row in unbalanced.select_columns(["gender", "skin_tone", "age"]).to_list()]
    counterfactual = [index for index, is_base in enumerate(dataset["is_base"]) if not is_base]
    for attribute in ATTRIBUTES:
        stereotyped = [
            rows[index][attribute] == getattr(STEREOTYPES[concept_names[dataset[index]["concept"]]], attribute)
            for index in counterfactual
        ]
        assert 0.7 < sum(stereotyped) / len(stereotyped) < 0.97
        balanced = [
            dataset.features[attribute].int2str(dataset[index][attribute])
            == getattr(STEREOTYPES[concept_names[dataset[index]["concept"]]], attribute)
            for index in counterfactual
        ]
        assert sum(balanced) / len(balanced) < 0.7


def _numbers(skew: float, zero_shot: float, recall: float) -> dict:
    """A `headline`-shaped entry with the same skew for every attribute and metric."""
    entry = {attribute: {"max_skew": skew, "min_skew": -skew, "ndkl": skew} for attribute in ATTRIBUTES}
    return entry | {"zero_shot_accuracy": zero_shot, "recall_at_5": recall, "zero_shot_groups": {}}


def test_alpha_is_the_fairest_within_the_downstream_tolerance():
    from cf_hf.world.demo.selection import choose_alpha

    original = _numbers(1.0, 0.70, 0.40)
    sweep = {"alpha=0.5": _numbers(0.6, 0.70, 0.40), "alpha=0.9": _numbers(0.3, 0.695, 0.392),
             "alpha=1": _numbers(0.2, 0.70, 0.385)}  # fmt: skip
    assert choose_alpha([0.5, 0.9, 1.0], original, sweep, tolerance=0.01) == 0.9
    assert choose_alpha([0.5, 0.9, 1.0], original, sweep, tolerance=0.02) == 1.0
    assert choose_alpha([0.5], original, {"alpha=0.5": _numbers(0.6, 0.5, 0.4)}, tolerance=0.01) == 0.0


def test_summary_chooses_alpha_on_the_validation_sets_and_reports_the_test_sets():
    from cf_hf.world.demo import DemoConfig
    from cf_hf.world.demo.summary import summarise

    config = DemoConfig(alphas=(0.0, 0.5, 1.0), seeds=1, ablations=False)
    original = _numbers(1.0, 0.70, 0.40)
    # On the test sets α = 1 keeps R@5; on the validation sets it loses 3 points: α = 0.5 is chosen.
    test = [{"alpha=0": original, "alpha=0.5": _numbers(0.5, 0.70, 0.40), "alpha=1": _numbers(0.2, 0.70, 0.40)}]
    validation = {"original": original,
                  "per_seed": [{"alpha=0": original, "alpha=0.5": _numbers(0.5, 0.70, 0.40),
                                "alpha=1": _numbers(0.2, 0.70, 0.37)}]}  # fmt: skip
    floor = {attribute: {"equal_opportunity": {"max_skew": 0.1}} for attribute in ATTRIBUTES}
    chosen = summarise(config, original, floor, test, validation)
    assert chosen["chosen_alpha"] == 0.5 and chosen["alpha_selection"]["sets"] == "validation"
    assert chosen["reduction"]["alpha=0.5"]["mean"]["gender"]["max_skew"] == pytest.approx(0.5)
    assert not chosen["targets"]["gender"]["max_skew"]  # 50% < 60%, on the reported (test) numbers
    assert summarise(config, original, floor, test)["chosen_alpha"] == 1.0  # without validation sets


def test_quick_demo_says_it_loaded_the_shipped_original_and_why(quick_demo):
    """--quick has the shipped original's settings: the run loads it and records why."""
    output_dir, _ = quick_demo
    results = json.loads((output_dir / "results.json").read_text())
    assert results["config"]["original"] == {
        "source": "shipped", "reason": "the shipped original was pretrained with this run's corpus and pretraining settings"
    }
    assert "the shipped one, loaded" in (output_dir / "report.md").read_text()


def test_quick_demo_compares_clip_clip_and_biased_prompts_under_the_same_protocol(quick_demo):
    from cf_hf.methods import METHOD_CONFIG_FIELD

    output_dir, stdout = quick_demo
    results = json.loads((output_dir / "results.json").read_text())
    selection = results["method_selection"]
    assert selection["clip_clip"]["candidates"] == [f"clip_clip-keep={m}" for m in (16, 32, 48, 56)]
    assert selection["biased_prompts"]["candidates"] == [f"biased_prompts-lambda={lam}" for lam in (10, 100, 1000)]
    for method in selection.values():
        assert method["sets"] == "validation"
        assert method["chosen"] is None or method["chosen"] in method["candidates"]
        for name in method["candidates"]:
            assert set(results["models"][name]["gender"]) == {"max_skew", "min_skew", "ndkl"}
            assert results["methods"][name]["fit_seconds"] > 0
    config = json.loads((output_dir / "seed-0" / "methods" / "clip_clip-keep=16" / "config.json").read_text())
    assert config[METHOD_CONFIG_FIELD]["settings"] == {"attribute": "gender+skin_tone+age", "keep": 16,
                                                      "estimator": "histogram"}
    assert config[METHOD_CONFIG_FIELD]["fitted_on"]["image_features"] == "unnormalized"
    prompts = json.loads((output_dir / "seed-0" / "methods" / "biased_prompts-lambda=10" / "config.json").read_text())
    fitted_on = prompts[METHOD_CONFIG_FIELD]["fitted_on"]
    assert fitted_on["calibration_concepts"] == ["hospital", "kitchen", "street", "school"]
    assert not set(fitted_on["calibration_concepts"]) & set(fitted_on["evaluated_concepts"])
    assert len(fitted_on["evaluated_concepts"]) == 8
    assert "## Against other debiasing methods" in (output_dir / "report.md").read_text()
    assert "| CLIP-clip (m = " in stdout and "| biased prompts (λ = " in stdout
    # Every training-free method of the registry, each with its chosen setting, needs and measured costs.
    from cf_hf.methods import training_free_methods
    from cf_hf.world.demo.summary import METHOD_LABELS

    assert set(selection) == set(training_free_methods())
    assert selection["bendvlm"]["candidates"] == ["bendvlm-neighbors=32"]
    assert selection["sfid"]["candidates"] == ["sfid-m=4", "sfid-m=8"]
    for method in training_free_methods():
        assert f"| {METHOD_LABELS[method]} (" in stdout, method
    assert "| reference set at query time |" in stdout and "ms / query" in stdout
    assert all(value > 0 for value in results["query_ms"].values())
    assert set(selection["spd"]["candidates"]) <= set(results["query_ms"])
    assert (output_dir / "plots" / "frontier.png").stat().st_size > 0
    assert "![frontier](plots/frontier.png)" in (output_dir / "report.md").read_text()


def test_the_printed_compare_command_scores_the_demos_files_to_the_demos_numbers(quick_demo):
    """The hand-off from the demo to `cf-hf compare`: the command the demo prints, run on the files the
    demo wrote (its galleries, original and sweep), refits the methods and gives the demo's numbers."""
    output_dir, stdout = quick_demo
    results = json.loads((output_dir / "results.json").read_text())
    command = results["compare_command"]
    assert command[:2] == ["cf-hf", "compare"] and " ".join(command) in stdout
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    completed = subprocess.run([sys.executable, "-m", "cf_hf.cli", *command[1:], "--no_progress"],
                               capture_output=True, text=True, env=env, timeout=600)
    assert completed.returncode == 0, completed.stderr[-4000:]
    compared = json.loads((output_dir / "compare" / "results.json").read_text())["models"]
    names = [name for name in results["models"] if name in compared]
    # Every method the demo compared is in the command's output, with every setting the demo fitted.
    compare_results = json.loads((output_dir / "compare" / "results.json").read_text())
    methods = ("clip_clip", "biased_prompts", "closed_form", "bendvlm", "sfid", "spd")
    assert set(methods) <= {entry["method"] for entry in compare_results["methods"].values()}
    fitted = [name for name in results["models"] if name.split("-")[0] in methods]
    assert {name.split("-")[0] for name in fitted} == set(methods), fitted
    assert set(fitted) <= set(compared), sorted(set(fitted) - set(compared))
    assert len(names) == 1 + 3 + len(fitted), names  # the original, three α's, every method's settings
    for name in names:
        for attribute in ATTRIBUTES:
            for metric in ("max_skew", "ndkl"):
                assert compared[name][attribute][metric] == pytest.approx(results["models"][name][attribute][metric],
                                                                          abs=1e-6), (name, attribute, metric)
        assert compared[name]["zero_shot_accuracy"] == pytest.approx(results["models"][name]["zero_shot_accuracy"])
        assert compared[name]["recall_at_5"] == pytest.approx(results["models"][name]["recall_at_5"])
    assert (output_dir / "compare" / "plots" / "frontier.png").stat().st_size > 0


def test_summary_chooses_each_methods_setting_on_the_validation_sets():
    from cf_hf.world.demo import DemoConfig
    from cf_hf.world.demo.summary import summarise

    config = DemoConfig(alphas=(0.0, 1.0), seeds=1, ablations=False)
    original = _numbers(1.0, 0.70, 0.40)
    sweep = {"alpha=0": original, "alpha=1": _numbers(0.5, 0.70, 0.40)}
    # On the test sets m = 8 is fairest and keeps accuracy; on validation it loses 5 points: m = 16.
    test = [{**sweep, "clip_clip-keep=8": _numbers(0.3, 0.70, 0.40), "clip_clip-keep=16": _numbers(0.6, 0.70, 0.40)}]
    validation = {"original": original, "per_seed": [{**sweep, "clip_clip-keep=8": _numbers(0.3, 0.65, 0.40),
                                                      "clip_clip-keep=16": _numbers(0.6, 0.70, 0.40)}]}  # fmt: skip
    runs = [{name: {"name": name, "method": "clip_clip", "path": "x", "settings": {}, "swept": "keep",
                    "fit_seconds": 2.0} for name in ("clip_clip-keep=8", "clip_clip-keep=16")}]  # fmt: skip
    floor = {attribute: {"equal_opportunity": {"max_skew": 0.1}} for attribute in ATTRIBUTES}
    results = summarise(config, original, floor, test, validation, runs)
    assert results["method_selection"]["clip_clip"]["chosen"] == "clip_clip-keep=16"
    assert results["chosen_alpha"] == 1.0  # the methods' names never enter the α choice
    assert "clip_clip-keep=8" not in results["alpha_selection"]["reductions"]
    assert results["methods"]["clip_clip-keep=8"]["fit_seconds"] == 2.0


def test_quick_demo_prints_an_explorer_command_that_opens_its_outputs(quick_demo, capsys):
    import shlex

    from cf_hf.cli import main

    output_dir, stdout = quick_demo
    (line,) = [line for line in stdout.splitlines() if line.startswith("explorer (needs cf_hf[explorer]): ")]
    command = shlex.split(line.split(": ", 1)[1])
    assert command[:2] == ["cf-hf", "explore"] and str(output_dir / "explorer_cache") in command
    assert main([*command[1:], "--no_progress", "--check", "a photo of a doctor", "--k", "10"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("original: MaxSkew@10 ") and "\nCF_alpha-" in out
    # Every compared method's checkpoint of the table answers beside them.
    for method in json.loads((output_dir / "results.json").read_text())["method_selection"]:
        assert f"\n{method}: MaxSkew@10 " in out, method
