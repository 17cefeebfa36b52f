"""Any `datasets` dataset (object, local folder, or Hub name) with an image column and label/caption
columns named as options: a gallery, a retrieval set or a zero-shot set."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..sets import AttributeGallery, DatasetImages, RetrievalSet, ZeroShotSet


def _open_dataset(dataset, split: str | None):
    import datasets

    if isinstance(dataset, (str, Path)):
        path = Path(dataset)
        if path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file()):
            dataset = datasets.load_from_disk(str(path))
        else:
            dataset = datasets.load_dataset(str(dataset), split=split)
    if isinstance(dataset, (datasets.DatasetDict, dict)):
        splits = list(dataset)
        if split is None and len(splits) == 1:
            split = splits[0]
        if split not in dataset:
            raise ValueError(f"choose a split: split={split!r} is not one of {splits}")
        dataset = dataset[split]
    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(f"expected a datasets.Dataset (or a path/name to load), got {type(dataset).__name__}")
    return dataset


def _check_columns(dataset, columns: Sequence[str], option: str) -> None:
    missing = [column for column in columns if column not in dataset.column_names]
    if missing:
        raise ValueError(f"{option}: column(s) {missing} not in the dataset; its columns are {dataset.column_names}")


def _label_column(dataset, column: str) -> list:
    import datasets

    values = list(dataset.select_columns([column])[column])
    feature = dataset.features[column]
    for row, value in enumerate(values):
        if value is None or value != value:  # None, or NaN (NaN != NaN)
            raise ValueError(f"column {column!r}: row {row} has no value ({value!r})")
    if isinstance(feature, datasets.ClassLabel):
        return [feature.int2str(int(value)) for value in values]
    return values


def load_hf_gallery(
    dataset,
    attribute_columns: Sequence[str],
    image_column: str = "image",
    concept_column: str | None = None,
    split: str | None = None,
    name: str | None = None,
) -> AttributeGallery:
    """Any `datasets` dataset (object, local folder, or Hub name) as an attribute gallery.

    Args:
        attribute_columns: the sensitive-attribute columns (ClassLabel ids become their names).
        image_column: the `Image` column, decoded lazily one batch at a time.
        concept_column: optional concept of each image (for worst-group recall).
    """
    if not attribute_columns:
        raise ValueError("attribute_columns: name at least one sensitive-attribute column")
    dataset = _open_dataset(dataset, split)
    _check_columns(dataset, [image_column], "image_column")
    _check_columns(dataset, list(attribute_columns), "attribute_columns")
    if concept_column is not None:
        _check_columns(dataset, [concept_column], "concept_column")
    attributes = {column: _label_column(dataset, column) for column in attribute_columns}
    concepts = _label_column(dataset, concept_column) if concept_column else None
    title = name or getattr(dataset.info, "dataset_name", None) or "hf_gallery"
    return AttributeGallery(
        images=DatasetImages(dataset, image_column), attributes=attributes, concepts=concepts, name=title,
        source=f"datasets dataset {title!r} ({len(dataset)} rows)",
    )


def load_hf_retrieval(
    dataset, caption_column: str = "caption", image_column: str = "image", split: str | None = None,
    name: str | None = None,
) -> RetrievalSet:
    """A `datasets` dataset with an image column and a caption column (a string or a list per row)."""
    dataset = _open_dataset(dataset, split)
    _check_columns(dataset, [image_column, caption_column], "image_column/caption_column")
    captions = _label_column(dataset, caption_column)
    title = name or getattr(dataset.info, "dataset_name", None) or "hf_retrieval"
    return RetrievalSet(images=DatasetImages(dataset, image_column), captions=captions, name=title,
                        source=f"datasets dataset {title!r}")


def load_hf_zero_shot(
    dataset, label_column: str = "label", image_column: str = "image", class_names: Sequence[str] | None = None,
    templates: Sequence[str] | None = None, attribute_columns: Sequence[str] = (), split: str | None = None,
    name: str | None = None,
) -> ZeroShotSet:
    """A `datasets` dataset with an image column and a class-label column.

    Class names come from the column's `ClassLabel` feature unless given.
    """
    import datasets

    dataset = _open_dataset(dataset, split)
    _check_columns(dataset, [image_column, label_column, *attribute_columns], "image/label/attribute columns")
    feature = dataset.features[label_column]
    labels = list(dataset.select_columns([label_column])[label_column])
    if class_names is None:
        if not isinstance(feature, datasets.ClassLabel):
            raise ValueError(f"column {label_column!r} is not a ClassLabel: pass class_names")
        class_names = feature.names
    attributes = {column: _label_column(dataset, column) for column in attribute_columns} or None
    title = name or getattr(dataset.info, "dataset_name", None) or "hf_zero_shot"
    return ZeroShotSet(images=DatasetImages(dataset, image_column), labels=labels, class_names=list(class_names),
                       templates=templates, attributes=attributes, name=title, source=f"datasets dataset {title!r}")
