"""results.json: one schema for every producer, one reader (`cf_hf.evaluation.results`)."""

from __future__ import annotations

import json

import pytest

from cf_hf.evaluation.results import (
    SCHEMA_VERSION,
    ResultsError,
    load_results,
    parse_results,
    write_results,
)
from cf_hf.interpolation import alpha_key

DOCUMENT = {"models": {
    "original": {"fairness_k": 100, "gender": {"max_skew": 0.7, "min_skew": -0.5, "ndkl": 0.2},
                 "zero_shot_accuracy": 0.81, "able": {"gender": 0.5}},
    "alpha=1": {"alpha": 1.0, "gender": {"max_skew": 0.2, "min_skew": float("-inf")}, "recall_at_5": 0.6},
    "alpha=0.5": {"alpha": 0.5, "gender": {"max_skew": 0.3}},
    "cf": {"gender": {"max_skew": 0.25}},
}, "protocol": {"units": "fraction"}, "chosen_alpha": 0.5}


def test_alpha_key_is_the_results_spelling_of_alpha():
    assert [alpha_key(alpha) for alpha in (0, 0.25, 1.0)] == ["alpha=0", "alpha=0.25", "alpha=1"]


def test_written_results_read_back_typed_with_the_version(tmp_path):
    path = write_results(DOCUMENT, tmp_path / "results.json")
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION
    results = load_results(tmp_path)  # a folder holding results.json reads too
    assert list(results.sweep()) == ["original", "alpha=0.5", "alpha=1"]  # "cf" is no sweep member
    alpha_one = results.model_for_alpha(1)
    assert alpha_one.fairness == {"gender": {"max_skew": 0.2}}  # -inf was written as null: not measured
    assert alpha_one.metrics() == {"gender/max_skew": 0.2, "recall_at_5": 0.6}
    assert results.model_for_alpha(0).name == "original" and results.model_for_alpha(0.75) is None
    assert results.models["original"].fairness_k == 100 and results.extra == {"chosen_alpha": 0.5}


def test_a_newer_schema_version_is_refused(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1, "models": {}}))
    with pytest.raises(ResultsError, match="written by a newer cf_hf"):
        load_results(tmp_path / "results.json")


def test_the_flat_layout_of_older_demos_is_refused_with_what_to_rerun():
    with pytest.raises(ResultsError, match=r"flat layout of older `cf-hf demo` runs.*re-run `cf-hf demo`"):
        parse_results({"original": {}, "alpha=0.5": {}, "chosen_alpha": 0.5}, source="old.json")


def test_a_bad_value_is_named_with_file_model_and_key(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"models": {"alpha=0.5": {"gender": {"ndkl": "high"}}}}))
    with pytest.raises(ResultsError, match=f"{path}: model 'alpha=0.5' 'gender' 'ndkl': .* got 'high'"):
        load_results(path)
    with pytest.raises(ResultsError, match="'fairness_k': expected a positive integer, got 12.5"):
        parse_results({"models": {"m": {"fairness_k": 12.5}}})
    path.write_text("{not json")
    with pytest.raises(ResultsError, match="not valid JSON"):
        load_results(path)
    with pytest.raises(FileNotFoundError, match="no such results file"):
        load_results(tmp_path / "missing.json")


def test_a_producer_cannot_write_what_the_reader_refuses(tmp_path):
    with pytest.raises(ResultsError, match="'models' must map model names"):
        write_results({"models": ["original"]}, tmp_path / "results.json")
    assert not (tmp_path / "results.json").exists()
