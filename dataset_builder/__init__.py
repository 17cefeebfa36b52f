"""The counterfactual dataset: a `datasets` builder over a generation run, and the export to parquet
shards + dataset card that `datasets.load_dataset(folder or "org/name")` reads with no code."""

from dataset_builder.builder import (
    CounterfactualConfig,
    CounterfactualDataset,
    dataset_features,
    split_groups,
)
from dataset_builder.export import ExportFolderError, export_dataset, render_card

__all__ = [
    "CounterfactualConfig",
    "CounterfactualDataset",
    "ExportFolderError",
    "dataset_features",
    "export_dataset",
    "render_card",
    "split_groups",
]
