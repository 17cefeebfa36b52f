"""MaxSkew / MinSkew / NDKL: known answers, properties, equality with a per-query loop, bad input."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cf_hf.metrics import (
    fairness_metrics,
    fairness_summary,
    max_skew,
    min_skew,
    ndkl,
    top_k_indices,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from berg_reference import reference_metrics  # noqa: E402

KNOWN_SCORES = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
KNOWN_LABELS = [0, 0, 0, 1, 1, 1]


def test_known_answer_matches_published_convention():
    assert max_skew(KNOWN_SCORES, KNOWN_LABELS, 3) == pytest.approx(0.693147, abs=1e-6)
    assert min_skew(KNOWN_SCORES, KNOWN_LABELS, 3) == pytest.approx(-0.405465, abs=1e-6)
    assert ndkl(KNOWN_SCORES, KNOWN_LABELS, 3) == pytest.approx(0.693147, abs=1e-6)


def test_reference_loop_gives_the_known_answer():
    values = reference_metrics(np.array(KNOWN_SCORES), np.array(KNOWN_LABELS), 3, {0: 0.5, 1: 0.5})
    np.testing.assert_allclose(values[0], [0.693147, -0.405465, 0.693147], atol=1e-6)


def test_exact_convention_gives_minus_infinity_for_an_absent_value():
    assert min_skew(KNOWN_SCORES, KNOWN_LABELS, 3, convention="exact") == -np.inf
    assert max_skew(KNOWN_SCORES, KNOWN_LABELS, 3, convention="exact") == pytest.approx(np.log(2))


def test_berg_convention_clamps_min_skew_at_zero():
    # k=1: the absent value counts as 1/k = 1, so both unclamped skews are ln 2 > 0.
    assert min_skew([1.0, 0.0], [0, 1], 1) == 0.0
    assert max_skew([1.0, 0.0], [0, 1], 1) == pytest.approx(np.log(2))


def test_ties_are_broken_by_lower_image_index():
    scores = np.array([[1.0, 2.0, 2.0, 2.0, 0.0], [3.0] * 5])
    np.testing.assert_array_equal(top_k_indices(scores, 2), [[1, 2], [0, 1]])
    assert max_skew([1.0, 1.0, 1.0, 1.0], ["a", "b", "b", "a"], 1) == pytest.approx(np.log(2))


def test_one_dimensional_scores_give_a_float_and_matrices_an_array():
    assert isinstance(ndkl(KNOWN_SCORES, KNOWN_LABELS, 2), float)
    assert ndkl(np.array([KNOWN_SCORES] * 3), KNOWN_LABELS, 2).shape == (3,)


def test_vectorised_metrics_equal_the_per_query_loop():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=300)
    # Rounded scores create ties, including across the k-th place.
    scores = np.round(rng.normal(size=(25, 300)), 1)
    for desired_name in ("equal_opportunity", "demographic_parity"):
        shares = (
            {value: 0.25 for value in range(4)}
            if desired_name == "equal_opportunity"
            else {value: float(np.mean(labels == value)) for value in range(4)}
        )
        expected = reference_metrics(scores, labels, 40, shares)
        got = fairness_metrics(scores, labels, 40, desired=desired_name)[40]
        np.testing.assert_allclose(got["max_skew"], expected[:, 0], atol=1e-9)
        np.testing.assert_allclose(got["min_skew"], expected[:, 1], atol=1e-9)
        np.testing.assert_allclose(got["ndkl"], expected[:, 2], atol=1e-9)


def test_chunked_processing_equals_one_chunk(monkeypatch):
    import cf_hf.metrics.fairness as fairness

    rng = np.random.default_rng(1)
    scores, labels = rng.normal(size=(30, 200)), rng.integers(0, 3, size=200)
    whole = fairness_metrics(scores, labels, [5, 50])
    monkeypatch.setattr(fairness, "QUERY_CHUNK_ELEMENTS", 1)
    chunked = fairness_metrics(scores, labels, [5, 50])
    for k in (5, 50):
        for name in whole[k]:
            np.testing.assert_array_equal(whole[k][name], chunked[k][name])


def test_summary_reports_mean_worst_and_per_query_for_each_attribute_and_k():
    rng = np.random.default_rng(2)
    scores = rng.normal(size=(4, 50))
    attributes = {"gender": rng.integers(0, 2, 50), "race": rng.choice(list("abcdefg"), 50)}
    summary = fairness_summary(scores, attributes, [5, 10])
    assert set(summary) == {"gender", "race"}
    block = summary["race"][10]
    assert block["max_skew"]["worst"] == max(block["max_skew"]["per_query"])
    assert block["min_skew"]["worst"] == min(block["min_skew"]["per_query"])
    assert block["ndkl"]["mean"] == pytest.approx(np.mean(block["ndkl"]["per_query"]))


# --- properties --------------------------------------------------------------------------------

galleries = st.integers(min_value=4, max_value=40).flatmap(
    lambda n: st.tuples(
        st.lists(st.floats(-10, 10, allow_nan=False), min_size=n, max_size=n),
        st.lists(st.integers(0, 2), min_size=n, max_size=n).filter(lambda labels: len(set(labels)) > 1),
        st.integers(1, n),
    )
)


@settings(max_examples=60, deadline=None)
@given(galleries)
def test_max_skew_is_non_negative_min_skew_non_positive_and_ndkl_non_negative(gallery):
    scores, labels, k = gallery
    values = fairness_metrics(scores, labels, k)[k]
    assert values["max_skew"][0] >= 0 >= values["min_skew"][0]
    assert values["ndkl"][0] >= -1e-12


@settings(max_examples=60, deadline=None)
@given(galleries, st.randoms(use_true_random=False))
def test_permuting_images_with_their_scores_and_labels_changes_nothing(gallery, random):
    scores, labels, k = gallery
    # Distinct scores: with ties, the index tie-break legitimately depends on the order.
    scores = np.arange(len(scores), dtype=float) + np.asarray(scores) * 1e-3
    order = list(range(len(scores)))
    random.shuffle(order)
    before = fairness_metrics(scores, labels, k)[k]
    after = fairness_metrics(scores[order], np.asarray(labels)[order], k)[k]
    for name in before:
        np.testing.assert_allclose(before[name], after[name], atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(galleries)
def test_renaming_attribute_values_changes_nothing(gallery):
    scores, labels, k = gallery
    renamed = [["zebra", "apple", "mango"][label] for label in labels]
    before = fairness_metrics(scores, labels, k)[k]
    after = fairness_metrics(scores, renamed, k)[k]
    for name in before:
        np.testing.assert_allclose(before[name], after[name], atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(2, 4))
def test_top_k_matching_the_desired_distribution_has_zero_skew(per_value, n_values):
    k = per_value * n_values
    # The top-k holds per_value images of each value; the rest of the gallery is value 0.
    labels = list(range(n_values)) * per_value + [0] * 5
    scores = np.linspace(1, 0, len(labels))
    skews = fairness_metrics(scores, labels, k, metrics=("skew",))[k]["skew"]
    np.testing.assert_allclose(skews, 0.0, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(galleries)
def test_whole_gallery_with_demographic_parity_has_zero_max_skew(gallery):
    scores, labels, _ = gallery
    assert max_skew(scores, labels, len(scores), desired="demographic_parity") == pytest.approx(0.0, abs=1e-12)


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "k must be between 1"),
        ({"k": 7}, "k must be between 1"),
        ({"scores": [0.9, np.nan, 0.7, 0.6, 0.5, 0.4]}, "finite"),
        ({"scores": [0.9, np.inf, 0.7, 0.6, 0.5, 0.4]}, "finite"),
        ({"labels": [0, 0, 1]}, "shape mismatch"),
        ({"labels": [1] * 6}, "single value"),
        ({"scores": [], "labels": []}, "empty"),
        ({"desired": {0: 0.5, 1: 0.4}}, "sum to 1"),
        ({"desired": {0: 0.5, 1: 0.25, 2: 0.25}}, "absent"),
        ({"desired": {0: 1.0}}, "no share"),
        ({"desired": "uniform"}, "not known"),
        ({"convention": "other"}, "convention"),
    ],
)
def test_bad_input_raises_a_clear_value_error(kwargs, message):
    arguments = {"scores": KNOWN_SCORES, "labels": KNOWN_LABELS, "k": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        fairness_metrics(arguments.pop("scores"), arguments.pop("labels"), **arguments)


def test_summary_names_the_attribute_in_errors():
    with pytest.raises(ValueError, match="attribute 'age'"):
        fairness_summary(KNOWN_SCORES, {"age": [1] * 6}, [3])


@pytest.mark.parametrize(
    "labels",
    [
        [0.0, 0.0, np.nan, 1.0, 1.0, 1.0],
        ["a", "a", None, "b", "b", "b"],
        [0, 0, None, 1, 1, 1],
        ["a", "a", float("nan"), "b", "b", "b"],
    ],
)
def test_missing_labels_are_refused_naming_their_positions(labels):
    with pytest.raises(ValueError, match=r"1 missing value\(s\) \(None or NaN\) at position\(s\) 2"):
        fairness_metrics(KNOWN_SCORES, labels, 3)
