"""Evaluate a classifier: group accuracies, the stereotype gap, and the synthetic-vs-real probe.

- `classification_metrics`: worst-group, balanced and mean accuracy (`cf_hf.metrics`), and the
  accuracy of stereotypical groups (label, the attribute value most frequent for that label in the
  training data) minus that of the anti-stereotypical ones.
- `synthetic_probe`: a logistic-regression probe on the classifier's features (the input of its
  classification head) predicting whether an image is generated; its held-out accuracy (0.5 =
  chance) says how visible the generator's signature is to the trained model.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from cf_hf.metrics import balanced_accuracy, group_accuracies, worst_group_accuracy

from .encoding import PIXEL_VALUES

DEFAULT_BATCH_SIZE = 512
# Share of the probe's examples held out to measure it.
PROBE_TEST_FRACTION = 0.5


@torch.no_grad()
def predict(model, encoded, batch_size: int = DEFAULT_BATCH_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(n,) predicted label indices and (n, d) features (the classification head's input) of an
    encoded dataset (`cf_hf.methods.ffr.encoding.encode_dataset`)."""
    captured = []
    hook = model.classifier.register_forward_pre_hook(lambda module, inputs: captured.append(inputs[0].detach()))
    was_training = model.training
    model.eval()
    predictions = []
    try:
        for start in range(0, len(encoded), batch_size):
            batch = encoded[start:start + batch_size]
            logits = model(pixel_values=batch[PIXEL_VALUES].to(model.device)).logits
            predictions.append(logits.argmax(dim=-1).cpu())
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(predictions).numpy(), torch.cat(captured).cpu().numpy()


def majority_values(labels: Sequence[str], values: Sequence[str]) -> dict[str, str]:
    """Per label, its most frequent attribute value: the stereotype the training data teaches. A label
    whose most frequent values tie (balanced data) teaches none and is left out."""
    counts = Counter(zip(labels, values))
    by_label: dict[str, list[tuple[int, str]]] = {}
    for (label, value), count in counts.items():
        by_label.setdefault(label, []).append((count, value))
    stereotypes = {}
    for label, ranked in by_label.items():
        ranked.sort(reverse=True)
        if len(ranked) == 1 or ranked[0][0] > ranked[1][0]:
            stereotypes[label] = ranked[0][1]
    return stereotypes


def classification_metrics(predictions, labels, values, stereotypes: Mapping[str, str]) -> dict[str, float]:
    """Worst-group, balanced and mean accuracy, and the stereotypical/anti-stereotypical gap.

    Args:
        predictions, labels: (n,) predicted and true label names.
        values: (n,) attribute value of each example.
        stereotypes: label -> its stereotypical value (`majority_values` of the training data); labels
            without one (balanced training data) count in neither kind.

    Returns:
        worst_group_accuracy, balanced_accuracy, mean_accuracy, stereotypical_accuracy and
        anti_stereotypical_accuracy (means over the groups of each kind), stereotype_gap
        (stereotypical minus anti-stereotypical), as fractions. Without any stereotype (balanced
        training data) the last three are left out: there is no gap to measure.
    """
    predictions, labels, values = (np.asarray(array).astype(str) for array in (predictions, labels, values))
    per_group = group_accuracies(predictions, labels, values)
    stereotypical = [accuracy for (label, value), accuracy in per_group.items()
                     if label in stereotypes and stereotypes[label] == value]
    anti = [accuracy for (label, value), accuracy in per_group.items()
            if label in stereotypes and stereotypes[label] != value]
    metrics = {
        "worst_group_accuracy": worst_group_accuracy(predictions, labels, values),
        "balanced_accuracy": balanced_accuracy(predictions, labels, values),
        "mean_accuracy": float(np.mean(predictions == labels)),
    }
    if not stereotypes:
        return metrics
    if not stereotypical or not anti:
        raise ValueError(
            "the evaluation data needs stereotypical and anti-stereotypical groups to measure the gap; "
            f"it has {len(stereotypical)} and {len(anti)}"
        )
    metrics["stereotypical_accuracy"] = float(np.mean(stereotypical))
    metrics["anti_stereotypical_accuracy"] = float(np.mean(anti))
    metrics["stereotype_gap"] = metrics["stereotypical_accuracy"] - metrics["anti_stereotypical_accuracy"]
    return metrics


def synthetic_probe(real_features: np.ndarray, synthetic_features: np.ndarray, seed: int = 0) -> float:
    """Held-out accuracy of a linear probe telling synthetic from real features.

    The larger side is subsampled to the smaller, so chance is 0.5; the probe (standardised
    features, scikit-learn's `LogisticRegression`) is fitted on half and scored on the other half.

    Args:
        real_features: (n_real, d); synthetic_features: (n_synthetic, d).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    count = min(len(real_features), len(synthetic_features))
    if count < 4:
        raise ValueError(
            f"the probe needs at least 4 real and 4 synthetic images, got {len(real_features)} real and "
            f"{len(synthetic_features)} synthetic"
        )
    rng = np.random.default_rng(seed)
    real = real_features[rng.choice(len(real_features), count, replace=False)]
    synthetic = synthetic_features[rng.choice(len(synthetic_features), count, replace=False)]
    features = np.concatenate([real, synthetic])
    is_synthetic = np.repeat([0, 1], count)
    train_x, test_x, train_y, test_y = train_test_split(
        features, is_synthetic, test_size=PROBE_TEST_FRACTION, stratify=is_synthetic, random_state=seed
    )
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    probe.fit(train_x, train_y)
    return float(probe.score(test_x, test_y))


def evaluate_classifier(model, encoded, labels: Sequence[str], values: Sequence[str],
                        stereotypes: Mapping[str, str]) -> tuple[dict[str, float], np.ndarray]:
    """`classification_metrics` of `model` on an encoded dataset whose rows have the label names
    `labels` and attribute values `values`; also returns the (n, d) features for the probe."""
    predicted, features = predict(model, encoded)
    names = np.array([model.config.id2label[int(index)] for index in predicted])
    return classification_metrics(names, labels, values, stereotypes), features



def evaluate_checkpoint(model_dir, eval_dataset, stereotypes: Mapping[str, str], label_column: str,
                        group_column: str, probe_datasets: Mapping[str, object] | None = None,
                        seed: int = 0) -> dict:
    """Load a saved classifier and evaluate it on `eval_dataset` (real images with label and group
    columns); with `probe_datasets` (name -> generated images), also probe each against the
    evaluation images' features.

    Returns:
        `classification_metrics` plus `probe_accuracy/<name>` per probe dataset.
    """
    from transformers import CLIPForImageClassification, CLIPImageProcessor

    from .encoding import GroupSpace, check_classification_columns, column_strings, encode_dataset

    what = "evaluation dataset"
    check_classification_columns(eval_dataset, label_column, group_column, what)
    model = CLIPForImageClassification.from_pretrained(str(model_dir))
    processor = CLIPImageProcessor.from_pretrained(str(model_dir))
    labels = [model.config.id2label[index] for index in range(len(model.config.id2label))]
    eval_labels = column_strings(eval_dataset, label_column, what)
    unknown = sorted(set(eval_labels) - set(labels))
    if unknown:
        raise ValueError(f"the {what} has labels the classifier does not know: {unknown}; it knows {labels}")
    named = [(eval_dataset, what)] + [(data, f"probe dataset {name!r}") for name, data in (probe_datasets or {}).items()]
    space = GroupSpace.of(labels, named, group_column)
    encoded = encode_dataset(eval_dataset, processor, space, label_column, group_column, what)
    metrics, real_features = evaluate_classifier(
        model, encoded, eval_labels, column_strings(eval_dataset, group_column, what), stereotypes
    )
    for name, data in (probe_datasets or {}).items():
        probe_what = f"probe dataset {name!r}"
        _, synthetic_features = predict(model, encode_dataset(data, processor, space, label_column, group_column,
                                                              probe_what))
        metrics[f"probe_accuracy/{name}"] = synthetic_probe(real_features, synthetic_features, seed)
    return metrics
