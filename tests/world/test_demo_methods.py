"""The demo's comparison holds every training-free method of the registry: each is fitted by
`fit_methods`, gets a label, a chosen setting and a row of the comparison table (fits replaced by
stand-ins: the real run is tests/world/test_demo.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from cf_hf.evaluation.results import FAIRNESS_METRICS, ORIGINAL
from cf_hf.methods import training_free_methods
from cf_hf.methods.checkpoints import MethodCheckpoint
from cf_hf.world.corpus import ATTRIBUTES
from cf_hf.world.demo import report, stages, summary
from cf_hf.world.demo.config import DemoConfig


def _numbers(skew: float, accuracy: float = 0.8) -> dict:
    numbers = {name: {metric: skew for metric in FAIRNESS_METRICS} for name in ATTRIBUTES}
    return {**numbers, "zero_shot_accuracy": accuracy, "recall_at_5": 0.5, "zero_shot_groups": {}}


def test_the_demo_fits_and_tables_every_registered_training_free_method(monkeypatch):
    import cf_hf.methods

    fitted: list[str] = []

    def stand_in(method):
        def fit(*args, **kwargs):
            fitted.append(method)
            return [MethodCheckpoint(name=f"{method}-setting={value}", method=method, path=Path(f"/x/{method}{value}"),
                                     settings={"setting": value}, swept="setting", fit_seconds=0.5)
                    for value in (1, 2)]
        return SimpleNamespace(fit=fit)

    monkeypatch.setattr(cf_hf.methods, "get_method", stand_in)
    config = DemoConfig.quick()
    checkpoints = stages.fit_methods(config, Path("/original"), gallery=None, output_dir=Path("/out"), seed=0,
                                     evaluation=SimpleNamespace(embedding=None))
    assert sorted(fitted) == sorted(training_free_methods()) == sorted(stages.DEMO_TRAINING_FREE_METHODS)
    assert set(summary.METHOD_LABELS) >= set(training_free_methods())

    # Every method's better setting is chosen and has its row, with what it needs and its costs.
    original = _numbers(1.0)
    per_seed = {checkpoint.name: _numbers(0.5 if checkpoint.name.endswith("=2") else 0.9) for checkpoint in checkpoints}
    runs = [{checkpoint.name: checkpoint.record() for checkpoint in checkpoints}]
    selection, records = summary.summarise_methods(config, original, per_seed, None, runs)
    assert list(selection) == list(stages.DEMO_TRAINING_FREE_METHODS)
    assert all(entry["chosen"].endswith("=2") for entry in selection.values())
    results = {"models": {ORIGINAL: original, "alpha=0.5": original, **per_seed}, "chosen_alpha": 0.5,
               "method_selection": selection, "methods": records, "seeds": 1,
               "reduction": {name: {"mean": summary.reductions(original, numbers)} for name, numbers in per_seed.items()}
               | {"alpha=0.5": {"mean": summary.reductions(original, original)}},
               "random_floor": {name: {metric: 0.1 for metric in FAIRNESS_METRICS} for name in ATTRIBUTES},
               "query_ms": {ORIGINAL: 1.0, report.SWEEP_QUERY_COST: 1.0, "bendvlm-setting=2": 7.5}}
    rows = report.comparison_rows(results)
    header = report.comparison_header()
    assert all(len(row) == len(header) for row in rows)
    labels = [row[0] for row in rows]
    for method in stages.DEMO_TRAINING_FREE_METHODS:
        assert any(label.startswith(summary.METHOD_LABELS[method] + " (") for label in labels), method
    bendvlm = next(row for row in rows if row[0].startswith("BendVLM"))
    assert dict(zip(header, bendvlm))["reference set at query time"] == "yes"
    assert dict(zip(header, bendvlm))["ms / query"] == "7.50"
    cf_row = dict(zip(header, rows[1]))
    assert cf_row["training"] == "yes" and cf_row["ms / query"] == "1.00" and cf_row["labels"] == "–"


def test_the_demo_asks_the_closed_form_bendvlm_sfid_and_spd_to_remove_every_attribute(monkeypatch):
    import cf_hf.methods

    asked: dict[str, object] = {}

    def stand_in(method):
        def fit(*args, **kwargs):
            # closed_form: (original, output_dir, attribute, ...); the others: (original, output_dir, gallery, attribute, ...)
            asked[method] = args[2] if method in ("closed_form", "biased_prompts") else args[3]
            return []
        return SimpleNamespace(fit=fit)

    monkeypatch.setattr(cf_hf.methods, "get_method", stand_in)
    stages.fit_methods(DemoConfig.quick(), Path("/original"), gallery=None, output_dir=Path("/out"), seed=0,
                       evaluation=SimpleNamespace(embedding=None))
    assert all(asked[method] == list(ATTRIBUTES) for method in ("closed_form", "bendvlm", "sfid", "spd")), asked
    stages.fit_methods(DemoConfig(method_attributes=("age",)), Path("/original"), gallery=None, output_dir=Path("/out"),
                       seed=0, evaluation=SimpleNamespace(embedding=None))
    assert asked["sfid"] == ["age"]


def test_demo_config_refuses_unknown_or_repeated_method_attributes():
    import pytest

    with pytest.raises(ValueError, match=r"unknown attribute\(s\) \['hair'\]"):
        DemoConfig(method_attributes=("gender", "hair"))
    with pytest.raises(ValueError, match=r"\['age'\] given twice"):
        DemoConfig(method_attributes=("age", "gender", "age"))
    with pytest.raises(ValueError, match="empty"):
        DemoConfig(method_attributes=())


def test_a_model_equal_in_every_seed_shows_no_spread():
    zero = {name: {metric: 0.0 for metric in FAIRNESS_METRICS} for name in ATTRIBUTES}
    varied = {**zero, "gender": {metric: 0.01 for metric in FAIRNESS_METRICS}}
    results = {"seeds": 3, "std": {"fixed": {**zero, "zero_shot_accuracy": 3e-17}, "varied": varied}}
    assert report._spread(results, "fixed")("gender", "max_skew") is None
    assert report._spread(results, "varied")("gender", "max_skew") == 0.01
    assert report._spread({**results, "seeds": 1}, "varied")("gender", "max_skew") is None
