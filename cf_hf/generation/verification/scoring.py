"""Scoring datasets: group the rows, score every counterfactual in batches, resumably.

`verify_dataset` cuts a dataset's groups into chunks of `VerificationConfig.chunk_groups`, scores
each with `score_groups` (batched segmenter / classifier / embedder calls) and stores each finished
chunk's scores in a cache folder, so that a rerun computes only the missing ones. `Verifier` applies
it to every split of a `DatasetDict` and hands the scores to `apply_verification`.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from cf_hf.generation.verification.classifier import AttributeClassifier
from cf_hf.generation.verification.report import VerificationSummary, apply_verification
from cf_hf.generation.verification.scores import (
    SCORE_PREFIX,
    ImageEmbedder,
    VerificationConfig,
    VerificationError,
    column_as_strings,
    context_scores,
    dilate,
    duplicate_similarities,
    grid_attribute,
    person_area_ratio,
    person_box,
    rgb_array,
    score_columns,
    square_person_crop,
)


@dataclass
class Group:
    """One group to score: its base image (None when the data has none) and its counterfactuals,
    each with the requested value per attribute."""

    concept: str
    base: Image.Image | None
    images: list[Image.Image]
    requested: list[dict[str, str]]


def _batched(function: Callable, items: list, batch_size: int) -> list:
    out = []
    for start in range(0, len(items), batch_size):
        out += list(function(items[start : start + batch_size]))
    return out


def score_groups(
    groups: Sequence[Group],
    *,
    grid,
    config: VerificationConfig,
    classifier: AttributeClassifier,
    embedder: ImageEmbedder | None = None,
    segmenter=None,
    attributes: Sequence[str] | None = None,
) -> tuple[list[list[dict]], set[str]]:
    """Scores of every counterfactual of `groups` (per group, per image, a dict of the score
    columns without the verdict), and the checks skipped for lack of inputs.

    `segmenter` (a `cf_hf.generation.interfaces.Segmenter`) gives the person masks; without it
    the context and person checks are skipped and the classifier reads whole images. Without a
    base image in a group, its context and person checks are skipped. `embedder` defaults to
    the classifier when it has an `embed` method; without one the duplicate check is skipped.
    """
    attributes = list(grid.names if attributes is None else attributes)
    embedder = embedder if embedder is not None else (classifier if hasattr(classifier, "embed") else None)
    skipped: set[str] = set()
    if segmenter is None:
        skipped |= {"context", "person"}
    if embedder is None:
        skipped.add("duplicates")
    # Every image of the chunk, bases first in each group: segment, crop, classify, embed in batches.
    images, owners = [], []
    for group_index, group in enumerate(groups):
        if group.base is None:
            skipped |= {"context", "person"}
        else:
            images.append(group.base)
            owners.append((group_index, None))
        for member, image in enumerate(group.images):
            images.append(image)
            owners.append((group_index, member))
    masks = _batched(segmenter, images, config.batch_size) if segmenter is not None else [None] * len(images)
    masks = [None if mask is None else np.asarray(mask, dtype=bool) for mask in masks]
    base_mask = {group_index: masks[i] for i, (group_index, member) in enumerate(owners) if member is None}
    crops, concepts = [], []
    for (group_index, _member), image, mask in zip(owners, images, masks):
        region = base_mask.get(group_index, mask)  # the base's person box: the same crop for the whole group
        box = person_box(region, rgb_array(image).shape[:2], config.crop_margin)
        crops.append(square_person_crop(image, box))
        concepts.append(groups[group_index].concept)
    if embedder is not None:
        embeddings = np.concatenate([embedder.embed(crops[s : s + config.batch_size])
                                     for s in range(0, len(crops), config.batch_size)]) if crops else None  # fmt: skip
    if embedder is classifier and hasattr(classifier, "classify") and crops:
        probabilities = classifier.classify(embeddings, concepts)
    else:
        parts = [classifier(crops[s : s + config.batch_size], concepts[s : s + config.batch_size])
                 for s in range(0, len(crops), config.batch_size)]  # fmt: skip
        probabilities = {name: np.concatenate([part[name] for part in parts]) for name in attributes} if parts else {}
    position = {owner: i for i, owner in enumerate(owners)}
    results = []
    for group_index, group in enumerate(groups):
        rows = []
        base_index = position.get((group_index, None))
        members = [position[(group_index, m)] for m in range(len(group.images))]
        group_indices = ([base_index] if base_index is not None else []) + members
        duplicates = duplicate_similarities(embeddings[group_indices]) if embedder is not None else None
        context_region = None
        if base_index is not None and masks[base_index] is not None:
            side = min(masks[base_index].shape)
            radius = math.ceil((config.mask_dilation + 3 * config.mask_feather + config.context_margin) * side)
            context_region = dilate(masks[base_index], radius)
        for k, (index, requested) in enumerate(zip(members, group.requested)):
            row: dict = dict.fromkeys(score_columns(attributes)[:-2])
            if base_index is not None and masks[base_index] is not None:
                row[SCORE_PREFIX + "context_difference"], row[SCORE_PREFIX + "context_ssim"] = context_scores(
                    group.base, group.images[k], context_region
                )
                row[SCORE_PREFIX + "person_area_ratio"] = person_area_ratio(masks[base_index], masks[index])
            shows_requested = base_index is not None
            for name in attributes:
                values = list(grid_attribute(grid, name).values)
                wanted = values.index(requested[name])
                row[SCORE_PREFIX + f"adherence_{name}"] = float(probabilities[name][index, wanted])
                if base_index is not None:
                    predicted = int(probabilities[name][index].argmax())
                    base_value = int(probabilities[name][base_index].argmax())
                    row[SCORE_PREFIX + f"kept_base_{name}"] = bool(predicted == base_value != wanted)
                    shows_requested &= base_value == wanted
            if base_index is not None:
                row[SCORE_PREFIX + "base_shows_requested"] = bool(shows_requested)
            if duplicates is not None:
                row[SCORE_PREFIX + "duplicate_similarity"] = float(duplicates[k + (1 if base_index is not None else 0)])
                if base_index is not None:
                    row[SCORE_PREFIX + "base_similarity"] = float(embeddings[index] @ embeddings[base_index])
            rows.append(row)
        results.append(rows)
    return results, skipped


def check_attribute_values(dataset, grid, where: str) -> list[str]:
    """The grid attributes that are columns of `dataset`; a `VerificationError` naming the column
    and value for a value the grid has no prompt for, or when no attribute column is there."""
    attributes = [name for name in grid.names if name in dataset.column_names]
    if not attributes:
        raise VerificationError(
            f"{where} has none of the attribute columns {grid.names}: nothing says what each image should show."
        )
    for name in attributes:
        feature = dataset.features[name]
        names = getattr(feature, "names", None)
        present = set(names) if names else {v for v in dataset.unique(name) if v is not None}
        unknown = sorted(present - set(grid_attribute(grid, name).values))
        if unknown:
            raise VerificationError(
                f"{where}, column {name!r}: value {unknown[0]!r} has no prompt in the attribute grid "
                f"(its values: {list(grid_attribute(grid, name).values)}); add it to the grid file (--attribute_grid_file)."
            )
    return attributes


def plan_groups(dataset) -> tuple[list[tuple[int | None, list[int]]], set[str]]:
    """(base row, counterfactual rows) per group, in order of first appearance, and the checks the
    columns rule out: without `group_id` and `is_base` every row is its own group with no base."""
    columns = set(dataset.column_names)
    if not {"group_id", "is_base"} <= columns:
        return [(None, [index]) for index in range(len(dataset))], {"context", "person", "duplicates"}
    table = dataset.select_columns(["group_id", "is_base"]).to_dict()
    order: dict[str, list] = {}
    for index, (group_id, is_base) in enumerate(zip(table["group_id"], table["is_base"])):
        entry = order.setdefault(group_id, [None, []])
        if is_base:
            entry[0] = index
        else:
            entry[1].append(index)
    return [(base, members) for base, members in order.values() if members], set()


def content_key(dataset) -> str:
    """A digest of a dataset's rows (image bytes and every other column): the same data gives the
    same key in any process, whatever cache folder `datasets` used, so a rerun finds its scores."""
    import datasets

    digest = hashlib.sha256(json.dumps(dataset.features.to_dict(), sort_keys=True).encode())
    raw = dataset.cast_column("image", datasets.Image(decode=False)) if "image" in dataset.column_names else dataset
    for batch in raw.iter(batch_size=1024):
        for name in sorted(batch):
            for value in batch[name]:
                if isinstance(value, dict) and "bytes" in value:
                    value = value["bytes"] or value.get("path")
                digest.update(value if isinstance(value, bytes) else json.dumps(value, default=str).encode())
    return digest.hexdigest()[:16]


def _fingerprint(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _provenance(component) -> dict:
    from cf_hf.generation.interfaces import component_provenance

    return {} if component is None else component_provenance(component)


@dataclass
class VerificationReport:
    """What one `verify_dataset` call did."""

    rows: int = 0
    chunks_scored: int = 0
    chunks_resumed: int = 0
    seconds: float = 0.0
    skipped: set[str] = field(default_factory=set)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")


def verify_dataset(
    dataset,
    *,
    grid,
    config: VerificationConfig | None = None,
    classifier: AttributeClassifier,
    embedder: ImageEmbedder | None = None,
    segmenter=None,
    cache_dir: str | Path | None = None,
    show_progress: bool = True,
    where: str = "the dataset",
) -> tuple[list[dict | None], VerificationReport]:
    """Score every counterfactual row of `dataset` (a `datasets.Dataset` with `image`, the grid's
    attribute columns and, for the context checks, `group_id` and `is_base`).

    Returns per row its scores (None for base rows) and a report. With `cache_dir`, each chunk of
    `config.chunk_groups` groups is stored there when done (keyed by the data, the scoring
    settings and the components), and a rerun scores only the chunks missing.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm.auto import tqdm

    config = config or VerificationConfig()
    attributes = check_attribute_values(dataset, grid, where)
    plan, skipped = plan_groups(dataset)
    report = VerificationReport(skipped=set(skipped))
    key = _fingerprint({"data": content_key(dataset), "scoring": config.scoring(),
                        "attributes": attributes, "classifier": _provenance(classifier),
                        "embedder": _provenance(embedder), "segmenter": _provenance(segmenter)})  # fmt: skip
    cache = Path(cache_dir) if cache_dir is not None else None
    scores: list[dict | None] = [None] * len(dataset)
    pixels = dataset.select_columns(["image"])
    concepts = column_as_strings(dataset, "concept") if "concept" in dataset.column_names else [""] * len(dataset)
    values = {name: column_as_strings(dataset, name) for name in attributes}
    requested = [{name: values[name][index] for name in attributes} for index in range(len(dataset))]
    if "is_base" not in dataset.column_names:  # rows with no requested value are taken for base images
        plan = [(base, [i for i in members if any(requested[i].values())]) for base, members in plan]
        plan = [(base, members) for base, members in plan if members]
    for _, members in plan:
        for index in members:
            missing = [name for name in attributes if requested[index][name] is None]
            if missing:
                raise VerificationError(
                    f"{where}, row {index}: a counterfactual with no value in column {missing[0]!r}; "
                    "every counterfactual must say what it was asked to show."
                )
    chunks = [plan[start : start + config.chunk_groups] for start in range(0, len(plan), config.chunk_groups)]
    total = sum(len(members) for _, members in plan)
    start_time = time.perf_counter()
    with tqdm(total=total, desc="verifying counterfactuals", unit="img", disable=not show_progress) as bar:
        for chunk_index, chunk in enumerate(chunks):
            path = None if cache is None else cache / f"chunk-{chunk_index:05d}-{key}.parquet"
            rows = [index for _, members in chunk for index in members]
            if path is not None and path.is_file():
                stored = pq.read_table(path).to_pylist()
                if len(stored) == len(rows) and all(entry["row"] == row for entry, row in zip(stored, rows)):
                    for entry in stored:
                        scores[entry.pop("row")] = entry
                    report.chunks_resumed += 1
                    bar.update(len(rows))
                    continue
            groups = []
            for base, members in chunk:
                groups.append(Group(
                    concept=concepts[members[0]],
                    base=None if base is None or "context" in skipped else pixels[base]["image"],
                    images=[pixels[index]["image"] for index in members],
                    requested=[requested[index] for index in members],
                ))  # fmt: skip
            chunk_scores, chunk_skipped = score_groups(groups, grid=grid, config=config, classifier=classifier,
                                                       embedder=embedder, segmenter=segmenter, attributes=attributes)  # fmt: skip
            if skipped & {"duplicates"}:
                for group_rows in chunk_scores:
                    for row in group_rows:
                        row[SCORE_PREFIX + "duplicate_similarity"] = None
                        row[SCORE_PREFIX + "base_similarity"] = None
            report.skipped |= chunk_skipped
            flat = [row for group_rows in chunk_scores for row in group_rows]
            for index, row in zip(rows, flat):
                scores[index] = row
            if path is not None:
                from cf_hf.generation.runtime import write_atomically

                table = pa.Table.from_pylist([{"row": index, **row} for index, row in zip(rows, flat)])
                buffer = pa.BufferOutputStream()
                pq.write_table(table, buffer)
                write_atomically(path, buffer.getvalue().to_pybytes())
            report.chunks_scored += 1
            report.rows += len(rows)
            bar.update(len(rows))
    report.seconds = time.perf_counter() - start_time
    return scores, report


@dataclass
class Verifier:
    """Everything `verify_dataset` needs, applied to every split of a `DatasetDict` at once:
    `verifier(splits, cache_dir)` returns (the verified DatasetDict, its `VerificationSummary`);
    the last call's per-split reports and summary stay in `reports` and `summary`."""

    grid: object
    classifier: AttributeClassifier
    embedder: ImageEmbedder | None = None
    segmenter: object = None
    config: VerificationConfig = field(default_factory=VerificationConfig)
    show_progress: bool = True
    reports: dict = field(default_factory=dict)
    summary: VerificationSummary | None = None

    def __call__(self, splits: Mapping, cache_dir: str | Path | None = None, where: str = "the dataset"):
        scores, skipped = {}, set()
        for split, dataset in splits.items():
            split_cache = None if cache_dir is None else Path(cache_dir) / str(split)
            scores[split], report = verify_dataset(
                dataset, grid=self.grid, config=self.config, classifier=self.classifier, embedder=self.embedder,
                segmenter=self.segmenter, cache_dir=split_cache, show_progress=self.show_progress,
                where=f"{where}, split {split!r}",
            )  # fmt: skip
            self.reports[str(split)] = report
            skipped |= report.skipped
        verified, self.summary = apply_verification(splits, scores, self.grid, self.config, skipped)
        return verified, self.summary
