"""Recall@K, zero-shot accuracy, group accuracies, worst-group recall and ABLE."""

from __future__ import annotations

import numpy as np
import pytest

from cf_hf.metrics import (
    able,
    balanced_accuracy,
    group_accuracies,
    recall_at_k,
    worst_group_accuracy,
    worst_group_recall,
    zero_shot_accuracy,
)


def _loop_recall(similarity, owners, k):
    text_hits = [owners[t] in np.argsort(-similarity[t], kind="stable")[:k] for t in range(len(owners))]
    image_hits = []
    for image in range(similarity.shape[1]):
        top_texts = np.argsort(-similarity[:, image], kind="stable")[:k]
        image_hits.append(any(owners[t] == image for t in top_texts))
    return np.mean(text_hits), np.mean(image_hits)


def test_recall_at_k_equals_a_sorting_loop():
    rng = np.random.default_rng(0)
    owners = np.repeat(np.arange(20), 5)
    similarity = np.round(rng.normal(size=(100, 20)), 1)  # ties included
    recalls = recall_at_k(similarity, owners, ks=(1, 5))
    for k in (1, 5):
        text_to_image, image_to_text = _loop_recall(similarity, owners, k)
        assert recalls["text_to_image"][k] == pytest.approx(text_to_image)
        assert recalls["image_to_text"][k] == pytest.approx(image_to_text)


def test_perfect_similarity_gives_full_recall():
    owners = np.repeat(np.arange(4), 2)
    similarity = np.eye(4)[owners]
    recalls = recall_at_k(similarity, owners, ks=(1,))
    assert recalls == {"text_to_image": {1: 1.0}, "image_to_text": {1: 1.0}}


def test_recall_rejects_an_image_without_caption():
    with pytest.raises(ValueError, match="no caption"):
        recall_at_k(np.zeros((2, 3)), np.array([0, 1]), ks=(1,))


def test_zero_shot_accuracy_top1_and_top2():
    logits = np.array([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [3.0, 1.0, 2.0]])
    assert zero_shot_accuracy(logits, np.array([0, 2, 1]), top_k=(1, 2)) == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3)}


def test_zero_shot_rejects_k_above_the_number_of_classes():
    with pytest.raises(ValueError, match="number of classes"):
        zero_shot_accuracy(np.zeros((2, 3)), np.array([0, 1]), top_k=(5,))


def test_group_accuracies_worst_and_balanced():
    labels = np.array([0, 0, 0, 0, 1, 1])
    attributes = np.array(["a", "a", "b", "b", "a", "a"])
    predictions = np.array([0, 0, 0, 1, 0, 1])
    groups = group_accuracies(predictions, labels, attributes)
    assert groups == {("0", "a"): 1.0, ("0", "b"): 0.5, ("1", "a"): 0.5}
    assert worst_group_accuracy(predictions, labels, attributes) == 0.5
    assert balanced_accuracy(predictions, labels, attributes) == pytest.approx(2 / 3)


@pytest.mark.parametrize("missing", [None, np.nan])
def test_group_accuracies_refuse_a_missing_attribute(missing):
    attributes = np.array(["a", "a", missing, "b"], dtype=object)
    with pytest.raises(ValueError, match=r"attributes has 1 missing value\(s\).*position\(s\) 2"):
        group_accuracies([0, 1, 0, 1], [0, 1, 1, 1], attributes)


def test_worst_group_recall_refuses_a_missing_attribute():
    with pytest.raises(ValueError, match=r"missing value\(s\).*position\(s\) 1"):
        worst_group_recall(np.ones((1, 4)), ["doctor"], ["doctor"] * 4, ["a", None, "b", "b"], k=2)


def test_worst_group_recall_finds_the_under_retrieved_value():
    image_concepts = np.array(["doctor"] * 4 + ["chef"] * 4)
    image_attributes = np.array(["a", "a", "b", "b"] * 2)
    scores = np.array([[4.0, 3.0, 1.0, 0.0, 2.0, 0, 0, 0]])  # doctor query: both "a" doctors, no "b"
    result = worst_group_recall(scores, ["doctor"], image_concepts, image_attributes, k=3)
    assert result["per_group"] == {"a": 1.0, "b": 0.0}
    assert result["worst"] == 0.0


def test_able_is_the_harmonic_mean():
    assert able(0.0, 1.0) == pytest.approx(1.0)
    assert able(np.log(2), 0.5) == pytest.approx(0.5)


def test_able_rejects_percent_accuracy():
    with pytest.raises(ValueError, match="fraction"):
        able(0.1, 68.3)
