"""Batches for counterfactual training: the dataset's columns, a group-aware batch sampler, a collator.

A counterfactual dataset has one row per image with (at least) the columns `image`, `caption` and
`group_id`; the rows of one `group_id` are counterfactuals of one scene (docs/method.md §1).

`GroupBatchSampler` builds every batch from P groups x K members (K = `group_size` >= 2), so that
each image has positives for the counterfactual loss. `CounterfactualCollator` turns rows into
`CounterfactualCLIPModel` inputs, with the group ids mapped to integers by `group_index`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Iterator, Sequence
from typing import Any

import torch

logger = logging.getLogger(__name__)

IMAGE_COLUMN = "image"
CAPTION_COLUMN = "caption"
GROUP_ID_COLUMN = "group_id"
REQUIRED_COLUMNS = (IMAGE_COLUMN, CAPTION_COLUMN, GROUP_ID_COLUMN)
# A row's image already processed by the CLIP image processor (see `CounterfactualCollator`).
PIXEL_VALUES_KEY = "pixel_values"
# What to do with groups that have fewer than `group_size` members (but at least two).
SMALL_GROUP_POLICIES = ("replace", "drop")
# Rows listed in an error message; the count is always given.
MAX_ROWS_NAMED = 10


def check_columns(column_names: Sequence[str], caption_suffix_columns: Sequence[str] = ()) -> None:
    """Raise a ValueError naming the missing columns of a counterfactual dataset."""
    missing = [name for name in REQUIRED_COLUMNS if name not in column_names]
    if missing:
        raise ValueError(
            f"the training dataset lacks the column(s) {missing}; it has {list(column_names)}. A "
            f"counterfactual dataset has one row per image with columns {list(REQUIRED_COLUMNS)}: "
            "the rows of one group_id are counterfactuals of one scene and share their caption."
        )
    missing = [name for name in caption_suffix_columns if name not in column_names]
    if missing:
        hint = (
            " (--caption_suffix_columns takes space-separated names: --caption_suffix_columns a b)"
            if any("," in name for name in missing)
            else ""
        )
        raise ValueError(
            f"caption_suffix_columns names column(s) {missing} that the training dataset lacks; it has "
            f"{list(column_names)}{hint}"
        )


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, str) and not value.strip()
    )


def _rows_text(rows: list[int]) -> str:
    shown = ", ".join(str(row) for row in rows[:MAX_ROWS_NAMED])
    return f"{len(rows)} row(s) ({shown}{', ...' if len(rows) > MAX_ROWS_NAMED else ''})"


def check_group_ids(group_ids: Sequence[Hashable]) -> None:
    """Raise a ValueError naming the rows without a group id (None, NaN or an empty string).

    Such rows would all share the "missing" id: unrelated images pooled into one group, each
    other's counterfactuals.
    """
    missing = [row for row, group_id in enumerate(group_ids) if _is_missing(group_id)]
    if missing:
        raise ValueError(
            f"{GROUP_ID_COLUMN!r} is missing in {_rows_text(missing)}: rows without a group id would be "
            "pooled into one group, as counterfactuals of each other. Give every row the group_id of "
            f"its scene, or drop those rows (dataset.filter(lambda row: row[{GROUP_ID_COLUMN!r}] is not None))"
        )


def check_captions(captions: Sequence[Any]) -> None:
    """Raise a ValueError naming the rows whose caption is missing (None, NaN, empty) or not a string."""
    missing = [row for row, caption in enumerate(captions) if _is_missing(caption) or not isinstance(caption, str)]
    if missing:
        raise ValueError(
            f"{CAPTION_COLUMN!r} is missing or not a string in {_rows_text(missing)} (first: "
            f"{captions[missing[0]]!r}): every image needs the caption of its scene"
        )


def caption_with_suffixes(row: dict[str, Any], suffix_columns: Sequence[str] = ()) -> str:
    """The row's caption followed by the values of `suffix_columns` (empty/None values skipped),
    comma-separated: e.g. "a doctor in the hospital, close-up, dim light" from the decorator columns,
    so that the caption names what the image shows."""
    if not isinstance(row[CAPTION_COLUMN], str):
        raise ValueError(
            f"the row of group_id {row.get(GROUP_ID_COLUMN)!r} has the caption {row[CAPTION_COLUMN]!r}; "
            "captions must be strings"
        )
    parts = [row[CAPTION_COLUMN]]
    for name in suffix_columns:
        value = row[name]
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise ValueError(f"caption suffix column {name!r} holds {value!r}; it must hold strings")
        parts.append(value)
    return ", ".join(parts)


def group_index(group_ids: Sequence[Hashable]) -> dict[Hashable, int]:
    """Map each distinct group id (string or integer) to an integer, in sorted order.

    The mapping depends only on the set of ids, so every process that reads the same dataset builds
    the same one, and gathered ids mean the same group everywhere.
    """
    return {group_id: index for index, group_id in enumerate(sorted(set(group_ids), key=repr))}


class GroupBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of `groups_per_batch` groups x `group_size` members, for one process.

    An epoch: each group's members are shuffled and cut into *units* of `group_size` rows; a last
    partial unit is topped up with other members of its group, so every row of every group is seen
    once per epoch (a few twice). Groups smaller than `group_size` form one unit, topped up with
    members drawn with replacement (`small_groups="replace"`) or are dropped (`"drop"`). Groups of one
    row have no counterfactual and are always dropped. Both are counted in one log line.

    The units are shuffled and dealt into global batches of `groups_per_batch * num_replicas` units;
    process `rank` takes its `groups_per_batch` consecutive units of each, so a unit (its group's
    positives) never straddles processes. The last global batch is completed with units from the
    start of the epoch's order, so every process gets the same number of full batches and every
    group is covered every epoch. Everything is deterministic given `seed` and the epoch
    (`set_epoch`).

    Args:
        group_ids: the group id of each row of the dataset (strings or integers).
        groups_per_batch: P, the number of units per batch and process.
        group_size: K >= 2, the rows per unit.
        seed: seed of the shuffles.
        small_groups: "replace" or "drop", for groups with 2 <= size < K.
        num_replicas, rank: the processes sharing the epoch, and this one.
    """

    def __init__(
        self,
        group_ids: Sequence[Hashable],
        groups_per_batch: int,
        group_size: int,
        seed: int = 0,
        small_groups: str = "replace",
        num_replicas: int = 1,
        rank: int = 0,
    ):
        if group_size < 2:
            raise ValueError(f"group_size must be >= 2 (an image needs a counterfactual), got {group_size}")
        if groups_per_batch < 1:
            raise ValueError(f"groups_per_batch must be >= 1, got {groups_per_batch}")
        if small_groups not in SMALL_GROUP_POLICIES:
            raise ValueError(f"small_groups must be one of {SMALL_GROUP_POLICIES}, got {small_groups!r}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, num_replicas={num_replicas})")
        self.groups_per_batch = groups_per_batch
        self.group_size = group_size
        self.seed = seed
        self.small_groups = small_groups
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0

        group_ids = list(group_ids)
        check_group_ids(group_ids)
        members: dict[Hashable, list[int]] = {}
        for row, group_id in enumerate(group_ids):
            members.setdefault(group_id, []).append(row)
        singletons = [g for g, rows in members.items() if len(rows) == 1]
        small = [g for g, rows in members.items() if 1 < len(rows) < group_size]
        dropped = set(singletons) | (set(small) if small_groups == "drop" else set())
        self.groups = [
            rows for g, rows in sorted(members.items(), key=lambda item: repr(item[0])) if g not in dropped
        ]
        if singletons or small:
            small_fate = "dropped" if small_groups == "drop" else "topped up with replacement"
            logger.info(
                "GroupBatchSampler: %d of %d groups used; %d single-image groups dropped; %d groups "
                "smaller than group_size=%d %s",
                len(self.groups),
                len(members),
                len(singletons),
                len(small),
                group_size,
                small_fate,
            )
        if not self.groups:
            raise ValueError(
                f"no usable group: of {len(members)} groups, {len(singletons)} have a single image and "
                f"{len(small) if small_groups == 'drop' else 0} were dropped as smaller than "
                f"group_size={group_size}. Counterfactual training needs groups of several images "
                "sharing a group_id (check the group_id column)."
            )
        self.units_per_epoch = sum(max(1, math.ceil(len(rows) / group_size)) for rows in self.groups)
        units_per_global_batch = groups_per_batch * num_replicas
        self.num_batches = math.ceil(self.units_per_epoch / units_per_global_batch)

    def set_epoch(self, epoch: int) -> None:
        """Use the shuffles of `epoch` (the Trainer calls this at each epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def _units(self, generator: torch.Generator) -> list[list[int]]:
        units = []
        for rows in self.groups:
            order = [rows[i] for i in torch.randperm(len(rows), generator=generator).tolist()]
            if len(rows) < self.group_size:
                extra = torch.randint(len(rows), (self.group_size - len(rows),), generator=generator)
                units.append(order + [rows[i] for i in extra.tolist()])
                continue
            for start in range(0, len(order), self.group_size):
                unit = order[start : start + self.group_size]
                if len(unit) < self.group_size:
                    # The last, partial unit: top up with members of earlier units of the group.
                    unit = unit + order[: self.group_size - len(unit)]
                units.append(unit)
        return units

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        units = self._units(generator)
        units = [units[i] for i in torch.randperm(len(units), generator=generator).tolist()]
        per_global_batch = self.groups_per_batch * self.num_replicas
        padding = self.num_batches * per_global_batch - len(units)
        units += (units * math.ceil(padding / len(units)))[:padding] if padding else []
        for batch in range(self.num_batches):
            start = batch * per_global_batch + self.rank * self.groups_per_batch
            yield [row for unit in units[start : start + self.groups_per_batch] for row in unit]


class CounterfactualCollator:
    """Rows `{image, caption, group_id, ...}` -> `CounterfactualCLIPModel` inputs.

    Captions (each followed by its row's `caption_suffix_columns` values, see
    `caption_with_suffixes`) are tokenised (padded to the longest, truncated to the model's length) and images
    processed by the `CLIPProcessor`; `group_ids` is a (batch,) int64 tensor through `group_to_index`
    (see `group_index`); `return_loss=True` makes the Trainer get the loss in evaluation too. Rows that
    carry `pixel_values` (their image processed already) are stacked as they are.
    """

    def __init__(
        self, processor, group_to_index: dict[Hashable, int], caption_suffix_columns: Sequence[str] = ()
    ):
        self.processor = processor
        self.group_to_index = group_to_index
        self.caption_suffix_columns = tuple(caption_suffix_columns)

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        texts = [caption_with_suffixes(row, self.caption_suffix_columns) for row in rows]
        if all(PIXEL_VALUES_KEY in row for row in rows):
            # Rows whose image the training data already processed (the trainer's pixel cache).
            inputs = self.processor(text=texts, return_tensors="pt", padding=True, truncation=True)
            inputs["pixel_values"] = torch.stack([row[PIXEL_VALUES_KEY] for row in rows])
        else:
            inputs = self.processor(
                text=texts,
                images=[row[IMAGE_COLUMN].convert("RGB") for row in rows],
                return_tensors="pt",
                padding=True,
                truncation=True,
            )
        try:
            group_ids = [self.group_to_index[row[GROUP_ID_COLUMN]] for row in rows]
        except KeyError as error:
            raise ValueError(f"group_id {error.args[0]!r} is not in the collator's group index") from None
        return {
            "input_ids": inputs["input_ids"],
            "attention_mask": inputs["attention_mask"],
            "pixel_values": inputs["pixel_values"],
            "group_ids": torch.tensor(group_ids, dtype=torch.long),
            "return_loss": True,
        }
