"""Classification datasets: any `datasets.Dataset` with an image, a label and a group column.

A group is a (label, attribute value) pair, as in GroupDRO and the worst-group metrics: with the
label column `concept` and the group column `gender`, ("nurse", "male") is one group. cf_hf's
counterfactual dataset has both columns as `ClassLabel`s; other datasets may hold strings or ints.
Every check names the dataset, the column and the values at fault.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

IMAGE_COLUMN = "image"
DEFAULT_LABEL_COLUMN = "concept"
DEFAULT_GROUP_COLUMN = "gender"
# Encoded columns, named as `CLIPForImageClassification.forward` and the trainer read them.
PIXEL_VALUES = "pixel_values"
LABELS = "labels"
GROUP_IDS = "group_ids"
MAX_NAMED = 10


def check_classification_columns(dataset, label_column: str, group_column: str, what: str) -> None:
    """Raise a ValueError naming `what` and the missing columns when the image, label or group column
    is absent."""
    missing = [column for column in (IMAGE_COLUMN, label_column, group_column) if column not in dataset.column_names]
    if missing:
        raise ValueError(
            f"the {what} has no column {', '.join(map(repr, missing))}; its columns are {dataset.column_names} "
            "(choose the columns with --label_column and --group_column)"
        )


def column_strings(dataset, column: str, what: str) -> list[str]:
    """Every row's value of `column` as a string (a `ClassLabel` as its name); a ValueError naming the
    rows whose value is missing."""
    from datasets import ClassLabel

    feature = dataset.features[column]
    raw = dataset[column]
    missing = [row for row, value in enumerate(raw) if value is None or (isinstance(feature, ClassLabel) and value < 0)]
    if missing:
        rows = ", ".join(map(str, missing[:MAX_NAMED])) + (" ..." if len(missing) > MAX_NAMED else "")
        raise ValueError(f"the {what} has no {column!r} value in {len(missing)} rows (rows {rows})")
    if isinstance(feature, ClassLabel):
        return [feature.names[value] for value in raw]
    return [str(value) for value in raw]


def value_names(dataset, column: str, what: str) -> list[str]:
    """The values `column` can take: a `ClassLabel`'s names in order, else the distinct values, sorted."""
    from datasets import ClassLabel

    feature = dataset.features[column]
    if isinstance(feature, ClassLabel):
        return list(feature.names)
    return sorted(set(column_strings(dataset, column, what)))


def check_same_labels(reference: Sequence[str], other: Sequence[str], reference_what: str, other_what: str) -> None:
    """Raise a ValueError when two datasets' label sets differ (a classifier has one label set)."""
    if set(reference) != set(other):
        only_reference = sorted(set(reference) - set(other))
        only_other = sorted(set(other) - set(reference))
        raise ValueError(
            f"the {other_what}'s label set differs from the {reference_what}'s: labels only in the "
            f"{reference_what}: {only_reference}; only in the {other_what}: {only_other}"
        )


@dataclass(frozen=True)
class GroupSpace:
    """The labels, the attribute values, and the (label, value) groups they make.

    Group id of (label i, value j) = i * len(values) + j.
    """

    labels: tuple[str, ...]
    values: tuple[str, ...]

    @property
    def num_groups(self) -> int:
        return len(self.labels) * len(self.values)

    def group_id(self, label: str, value: str) -> int:
        return self.labels.index(label) * len(self.values) + self.values.index(value)

    def name(self, group_id: int) -> str:
        label, value = divmod(int(group_id), len(self.values))
        return f"{self.labels[label]}/{self.values[value]}"

    @classmethod
    def of(cls, labels: Sequence[str], datasets_and_names: Sequence[tuple], group_column: str) -> GroupSpace:
        """The space of `labels` and every value of `group_column` in the given (dataset, what) pairs
        (a `ClassLabel`'s names first, in order, then values found elsewhere, sorted)."""
        values: list[str] = []
        for dataset, what in datasets_and_names:
            values += [value for value in value_names(dataset, group_column, what) if value not in values]
        return cls(tuple(labels), tuple(values))


def check_groups_present(group_ids: Sequence[int], space: GroupSpace, what: str,
                         needed_by: str = "GroupDRO needs every group (drop the label or value, or use --loss erm)") -> None:
    """Raise a ValueError naming the groups without examples and what needs them (`needed_by`):
    GroupDRO's per-group mean loss would divide by zero and the worst group would never be seen; a
    worst-group accuracy would miss a group."""
    counts = np.bincount(np.asarray(group_ids, dtype=np.int64), minlength=space.num_groups)
    empty = [space.name(group) for group in np.flatnonzero(counts == 0)]
    if empty:
        named = ", ".join(empty[:MAX_NAMED]) + (" ..." if len(empty) > MAX_NAMED else "")
        raise ValueError(
            f"the {what} has no examples of {len(empty)} of its {space.num_groups} (label/attribute) groups: "
            f"{named}; {needed_by}"
        )


def group_ids_of(dataset, space: GroupSpace, label_column: str, group_column: str, what: str) -> np.ndarray:
    """(n,) group id of every row."""
    labels = column_strings(dataset, label_column, what)
    values = column_strings(dataset, group_column, what)
    return np.array([space.group_id(label, value) for label, value in zip(labels, values)], dtype=np.int64)


def encode_dataset(dataset, image_processor, space: GroupSpace, label_column: str, group_column: str, what: str,
                   batch_size: int = 256):
    """The dataset as model inputs: `pixel_values` (float32, processed by `image_processor`),
    `labels` (label index in `space`) and `group_ids`, in torch format.

    Images are processed once here, not per step: for the small images this package trains on, the
    processor costs more than the model's step.
    """
    import datasets

    check_classification_columns(dataset, label_column, group_column, what)
    group_ids = group_ids_of(dataset, space, label_column, group_column, what)
    labels = group_ids // len(space.values)

    def encode(batch, indices):
        images = [image.convert("RGB") for image in batch[IMAGE_COLUMN]]
        pixel_values = image_processor(images=images, return_tensors="np")["pixel_values"].astype(np.float32)
        return {PIXEL_VALUES: pixel_values, LABELS: labels[indices], GROUP_IDS: group_ids[indices]}

    features = datasets.Features({
        PIXEL_VALUES: datasets.Array3D(shape=(3, *image_size(image_processor)), dtype="float32"),
        LABELS: datasets.Value("int64"), GROUP_IDS: datasets.Value("int64"),
    })  # fmt: skip
    encoded = dataset.select_columns([IMAGE_COLUMN]).map(
        encode, batched=True, batch_size=batch_size, with_indices=True, remove_columns=[IMAGE_COLUMN],
        features=features, desc=f"encoding the {what}",
    )
    return encoded.with_format("torch")


def image_size(image_processor) -> tuple[int, int]:
    """(height, width) of the processor's output."""
    crop = getattr(image_processor, "crop_size", None) or {}
    if getattr(image_processor, "do_center_crop", False) and "height" in crop:
        return int(crop["height"]), int(crop["width"])
    size = image_processor.size
    if "height" in size:
        return int(size["height"]), int(size["width"])
    return int(size["shortest_edge"]), int(size["shortest_edge"])
