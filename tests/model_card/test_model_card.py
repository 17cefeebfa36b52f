"""Model cards: metadata, measured numbers only, the sweep table, the loading snippet."""

from __future__ import annotations

import pytest
import yaml
from huggingface_hub import ModelCard

from cf_hf.evaluation.results import ResultsError
from model_card import render_model_card

RESULTS = {"schema_version": 1, "protocol": {}, "models": {
    "original": {"gender": {"max_skew": 0.7, "min_skew": -0.5, "ndkl": 0.2}, "zero_shot_accuracy": 0.81},
    "alpha=0.5": {"alpha": 0.5, "gender": {"max_skew": 0.31, "ndkl": 0.11}, "race": {"max_skew": 0.9},
                  "zero_shot_accuracy": 0.8, "recall_at_5": 0.62},
    "alpha=1": {"alpha": 1.0, "gender": {"max_skew": 0.2}},
}}


def _metadata(card: str) -> dict:
    return yaml.safe_load(card.split("---\n")[1])


def test_metadata_declares_a_transformers_zero_shot_model_with_base_and_datasets():
    card = render_model_card(alpha=0.5, base_model="openai/clip-vit-base-patch32",
                             datasets=["org/they-are-all-doctors"], results=RESULTS)
    metadata = _metadata(card)
    assert metadata["library_name"] == "transformers"
    assert metadata["pipeline_tag"] == "zero-shot-image-classification"
    assert metadata["base_model"] == "openai/clip-vit-base-patch32"
    assert metadata["datasets"] == ["org/they-are-all-doctors"]
    assert "fairness" in metadata["tags"]


def test_model_index_holds_exactly_the_measured_metrics_of_this_alpha():
    card = render_model_card(alpha=0.5, base_model="b", results=RESULTS, repo_id="org/cf")
    results = ModelCard(card).data.eval_results
    measured = {(r.metric_name, r.metric_value) for r in results}
    assert measured == {("MaxSkew (gender)", 0.31), ("NDKL (gender)", 0.11), ("MaxSkew (race)", 0.9),
                        ("Zero-shot accuracy", 0.8), ("Recall@5", 0.62)}


def test_missing_results_are_omitted_not_invented():
    card = render_model_card(alpha=0.25, base_model="b", results=RESULTS)
    assert "model-index" not in _metadata(card)
    assert "## Results" not in card
    bare = render_model_card(alpha=0.25, base_model="b")
    assert "## Results" not in bare and "## The α sweep" not in bare and "## Training details" not in bare
    for number in ("0.31", "0.62", "0.81"):
        assert number not in bare


def test_null_numbers_are_left_out():
    results = {"schema_version": 1, "models": {"alpha=0.5": {"gender": {"max_skew": None, "ndkl": None},
                                                             "zero_shot_accuracy": None}}}
    card = render_model_card(alpha=0.5, base_model="b", results=results)
    assert "model-index" not in _metadata(card)


def test_a_malformed_number_is_refused_naming_the_model_and_key():
    results = {"schema_version": 1, "models": {"alpha=0.5": {"zero_shot_accuracy": "n/a"}}}
    with pytest.raises(ResultsError, match="model 'alpha=0.5' 'zero_shot_accuracy': expected a finite number.*'n/a'"):
        render_model_card(alpha=0.5, base_model="b", results=results)


def test_the_fairness_k_is_named_on_the_card_and_in_the_model_index():
    results = {"schema_version": 1, "models": {"alpha=0.5": {"fairness_k": 100, "gender": {"max_skew": 0.31}}}}
    card = render_model_card(alpha=0.5, base_model="b", results=results)
    (metric,) = _metadata(card)["model-index"][0]["results"][0]["metrics"]
    assert metric == {"type": "max_skew", "name": "MaxSkew@100 (gender)", "value": 0.31, "args": {"k": 100}}
    assert "mean over queries at k = 100" in card and "| MaxSkew@100 (gender) |" in card


def test_alpha_and_its_meaning_are_stated():
    card = render_model_card(alpha=0.75, base_model="openai/clip-vit-base-patch32")
    assert "**This checkpoint: α = 0.75.**" in card
    assert "(1 − α) · θ_original + α · θ_fine-tuned" in card


def test_sweep_table_lists_every_model_and_the_plot_when_given():
    card = render_model_card(alpha=0.5, base_model="b", results=RESULTS, sweep_plot="sweep.png")
    sweep = card.split("## The α sweep")[1].split("## Intended use")[0]
    assert "| original |" in sweep and "| **alpha=0.5** (this checkpoint) |" in sweep and "| alpha=1 |" in sweep
    assert "| — |" in sweep  # alpha=1 has no accuracy: a dash, not a number
    assert "![Fairness and accuracy across α](sweep.png)" in sweep


def test_limitations_intended_use_training_and_loading_are_present():
    card = render_model_card(alpha=0.5, base_model="b", repo_id="org/cf-clip", revision="alpha-0.5",
                             training={"beta_cf": 1.0, "max_steps": 1000})
    for heading in ("## Intended use", "## Limitations", "## Training details", "## How to load"):
        assert heading in card
    for limitation in ("Synthetic data", "generators' own biases", "Fixed attribute taxonomies"):
        assert limitation in card
    assert 'CLIPModel.from_pretrained("org/cf-clip", revision="alpha-0.5")' in card
    assert "| max_steps | 1000 |" in card


def test_a_local_base_model_is_named_in_the_text_but_not_in_the_metadata():
    card = render_model_card(alpha=0.5, base_model="../../original", results=RESULTS)
    assert "base_model" not in _metadata(card)
    assert "`../../original`" in card
    absolute = render_model_card(alpha=0.5, base_model="/data/models/clip")
    assert "base_model" not in _metadata(absolute)
