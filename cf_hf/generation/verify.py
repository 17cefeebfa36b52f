"""Verified counterfactuals: score every generated image, flag the failures, measure the generator.

A counterfactual can fail in ways that poison a debiasing dataset: the person keeps the base
image's appearance (a copy), the requested appearance is ignored (more often for some groups than
others: the generator's own bias), the scene outside the person changes, the person disappears or
is duplicated. `score_groups` measures each counterfactual against its group's base image:

- **context** — outside the (dilated) person mask of the base image: the mean absolute pixel
  difference (a fraction of the pixel range) and SSIM (`skimage.metrics.structural_similarity`);
- **adherence** — per grid attribute, the probability that the person crop shows the requested
  value (a zero-shot CLIP classifier by default, `CLIPAttributeClassifier`), and whether the
  base image's own value was kept instead;
- **person** — the segmenter's person area in the counterfactual relative to the base image;
- **duplicates** — cosine similarities of the crop's embedding with the base image's and with any
  other image of its group: an edit that did nothing leaves a near-copy of the base.

Scores become columns (`verify_*`) of the dataset, so users can filter with `datasets`; rows that
fail a threshold of `VerificationConfig` go to a `rejected` split (see `apply_verification`), and
`VerificationSummary` tells how often each requested value passed — the card's "Verification"
section. Checks that cannot run (no base image in a group, no segmenter) are named as skipped.

Scoring is batched and cut into chunks of `chunk_groups` groups; `verify_dataset` stores each
finished chunk's scores in a cache folder and a rerun computes only the missing ones.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image, ImageFilter

DEFAULT_CLASSIFIER_MODEL = "openai/clip-vit-base-patch32"
SCORE_PREFIX = "verify_"
PASSED_COLUMN = "verify_passed"
FAILURES_COLUMN = "verify_failures"
REJECTED_SPLIT = "rejected"
CHECKS = ("context", "adherence", "person", "duplicates")
# Failure names in `verify_failures`.
FAIL_CONTEXT_DIFFERENCE = "context_difference"
FAIL_CONTEXT_SSIM = "context_ssim"
FAIL_ADHERENCE = "adherence_{attribute}"
FAIL_PERSON_MISSING = "person_missing"
FAIL_PERSON_DUPLICATED = "person_duplicated"
FAIL_DUPLICATE = "duplicate"
# SSIM needs an odd window no larger than the image; skimage's default is 7.
SSIM_WINDOW = 7
CACHE_FORMAT = "cf_hf-verification-chunk"


class VerificationError(ValueError):
    """The data cannot be verified as asked (an attribute value with no prompt, a missing column...)."""


@dataclass
class VerificationConfig:
    """Thresholds (a counterfactual passes when every check that ran passes) and how work is cut.

    Attributes:
        max_context_difference: largest mean absolute pixel difference outside the person, as a
            fraction of the pixel range (0–1).
        min_context_ssim: smallest SSIM outside the person.
        min_adherence: smallest probability of the requested value, per attribute.
        min_person_area_ratio / max_person_area_ratio: bounds of the person's area in the
            counterfactual relative to the base image (below: the person disappeared; above: the
            person was duplicated or grew).
        max_duplicate_similarity: largest cosine similarity of the person crop's embedding to the
            base image's (unless the base already shows the requested appearance).
        context_margin: extra dilation of the base image's person mask before the context is
            compared, as a fraction of the image's shorter side, on top of the mask dilation and
            feathering the generation used (`mask_dilation`, `mask_feather`).
        crop_margin: margin around the person's bounding box for the crop the classifier reads,
            as a fraction of the box's longer side.
        batch_size: images per classifier / embedder / segmenter call.
        chunk_groups: groups per resumable chunk.
    """

    max_context_difference: float = 0.02
    min_context_ssim: float = 0.9
    min_adherence: float = 0.5
    min_person_area_ratio: float = 0.5
    max_person_area_ratio: float = 2.0
    max_duplicate_similarity: float = 0.995
    context_margin: float = 0.03
    mask_dilation: float = 0.015
    mask_feather: float = 0.01
    crop_margin: float = 0.25
    batch_size: int = 64
    chunk_groups: int = 64

    def __post_init__(self):
        for name in ("batch_size", "chunk_groups"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}.")
        if not 0.0 <= self.min_person_area_ratio <= self.max_person_area_ratio:
            raise ValueError("need 0 ≤ min_person_area_ratio ≤ max_person_area_ratio.")
        for name in ("context_margin", "mask_dilation", "mask_feather", "crop_margin"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be ≥ 0, got {getattr(self, name)}.")

    def scoring(self) -> dict:
        """The settings that change the scores (thresholds only change the verdict)."""
        keys = ("context_margin", "mask_dilation", "mask_feather", "crop_margin")
        return {key: getattr(self, key) for key in keys}


@runtime_checkable
class AttributeClassifier(Protocol):
    def __call__(self, crops: Sequence[Image.Image], concepts: Sequence[str]) -> dict[str, np.ndarray]:
        """Per attribute name, (N, V) probabilities over that attribute's values (grid order)."""


@runtime_checkable
class ImageEmbedder(Protocol):
    def embed(self, crops: Sequence[Image.Image]) -> np.ndarray:
        """(N, D) unit-norm embeddings."""


# ---------------------------------------------------------------------------------------------
# The scores, one function each (pure numpy / PIL)
# ---------------------------------------------------------------------------------------------


def _as_array(image) -> np.ndarray:
    return np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.uint8)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """A boolean (H, W) mask grown by `radius` pixels (a square max filter)."""
    mask = np.asarray(mask, dtype=bool)
    if radius <= 0:
        return mask
    image = Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(2 * radius + 1))
    return np.asarray(image) > 0


def context_scores(base, image, person: np.ndarray | None) -> tuple[float, float]:
    """(mean absolute difference as a fraction of 255, SSIM) of `image` against `base` on the
    pixels outside `person` ((H, W) bool; None: the whole image).

    SSIM is the mean of scikit-image's SSIM map over those pixels (channels averaged); a
    constant-colour image pair counts as identical where it is."""
    from skimage.metrics import structural_similarity

    base, image = _as_array(base), _as_array(image)
    if base.shape != image.shape:
        raise VerificationError(f"a counterfactual is {image.shape[:2]}, its base image {base.shape[:2]}: sizes differ.")
    outside = np.ones(base.shape[:2], dtype=bool) if person is None else ~np.asarray(person, dtype=bool)
    if not outside.any():
        return 0.0, 1.0
    difference = np.abs(base.astype(np.float64) - image.astype(np.float64)).mean(axis=-1)
    window = min(SSIM_WINDOW, *(side - (1 - side % 2) for side in base.shape[:2]))
    if window < 3:  # too small for a window: SSIM is undefined, pixel identity stands in
        similarity = float(np.all(base[outside] == image[outside]))
    else:
        # The person region is taken from the base in both, so that windows straddling its edge
        # see only the context's changes.
        image = np.where(outside[..., None], image, base)
        _, ssim_map = structural_similarity(base, image, channel_axis=-1, data_range=255, win_size=window, full=True)
        similarity = float(ssim_map.mean(axis=-1)[outside].mean())
    return float(difference[outside].mean() / 255.0), similarity


def person_area_ratio(base_person: np.ndarray, person: np.ndarray) -> float | None:
    """The person's area in a counterfactual relative to the base image; None without a base person."""
    base_area = int(np.count_nonzero(base_person))
    return None if base_area == 0 else float(np.count_nonzero(person) / base_area)


def person_box(person: np.ndarray | None, shape: tuple[int, int], margin: float) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the person's bounding box grown by `margin` × its longer side;
    the whole image without a person."""
    height, width = shape
    if person is None or not np.any(person):
        return 0, 0, width, height
    rows, columns = np.nonzero(person)
    grow = math.ceil(margin * max(rows.max() - rows.min() + 1, columns.max() - columns.min() + 1))
    return (max(0, int(columns.min()) - grow), max(0, int(rows.min()) - grow),
            min(width, int(columns.max()) + 1 + grow), min(height, int(rows.max()) + 1 + grow))  # fmt: skip


def duplicate_similarities(embeddings: np.ndarray) -> np.ndarray:
    """Per image of a group, the largest cosine similarity to any other image of it; (N,) from
    (N, D) unit-norm embeddings (-1 for a group of one)."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    similarity = embeddings @ embeddings.T
    np.fill_diagonal(similarity, -np.inf)
    best = similarity.max(axis=1) if len(embeddings) > 1 else np.full(len(embeddings), -1.0)
    return np.where(np.isfinite(best), best, -1.0)


class PixelEmbedder:
    """Crops resized to `size` × `size`, flattened, centred and scaled to unit norm: cosine
    similarity in pixel space. It tells an untouched copy (similarity 1) from any repaint, where a
    semantic embedding may call two different people the same; it knows nothing else."""

    def __init__(self, size: int = 32):
        self.size = size

    @property
    def provenance(self) -> dict[str, str]:
        return {"class": "PixelEmbedder", "size": str(self.size)}

    def embed(self, crops: Sequence[Image.Image]) -> np.ndarray:
        vectors = np.stack([
            np.asarray(crop.convert("RGB").resize((self.size, self.size), Image.BILINEAR), dtype=np.float64).ravel()
            for crop in crops
        ])  # fmt: skip
        vectors -= vectors.mean(axis=1, keepdims=True)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# The zero-shot classifier
# ---------------------------------------------------------------------------------------------


def attribute_prompts(grid, attribute: str, concept: str) -> list[str]:
    """The zero-shot prompts of `attribute`'s values: the grid's appearance prompt with only this
    attribute's phrase (the other placeholders empty), e.g. "a photo of a woman working as a doctor"."""
    from cf_hf.concepts import fix_articles

    prompts = []
    for value in _attribute(grid, attribute).values:
        filled = {name: "" for name in grid.names}
        filled[attribute] = _attribute(grid, attribute).phrase(value)
        text = grid.prompt_template.format(concept=concept, **filled)
        prompts.append(fix_articles(" ".join(text.split()).replace(" ,", ",")))
    return prompts


class CLIPAttributeClassifier:
    """Zero-shot attribute probabilities and image embeddings from a CLIP checkpoint (any
    `CLIPModel`; default `openai/clip-vit-base-patch32`), batched under `torch.inference_mode`
    through `cf_hf.evaluation.embedding.EmbeddingEngine` (device, dtype, batch size)."""

    def __init__(self, grid, model_id: str = DEFAULT_CLASSIFIER_MODEL, *, device: str = "cpu",
                 dtype: str = "float32", batch_size: int = 64, engine=None):  # fmt: skip
        self.grid = grid
        self.model_id = str(model_id)
        self.device, self.dtype, self.batch_size = device, dtype, batch_size
        self._engine = engine
        self._text: dict[tuple[str, str], np.ndarray] = {}

    @property
    def provenance(self) -> dict[str, str]:
        return {"model_id": self.model_id, "dtype": self.dtype}

    @property
    def engine(self):
        if self._engine is None:
            from cf_hf.evaluation.embedding import EmbeddingCache, EmbeddingConfig, EmbeddingEngine

            config = EmbeddingConfig(device=self.device, dtype=self.dtype, batch_size=self.batch_size, progress=False)
            self._engine = EmbeddingEngine.from_pretrained(self.model_id, config=config, cache=EmbeddingCache(memory_budget_mb=0))
        return self._engine

    def _text_embeddings(self, attribute: str, concept: str) -> np.ndarray:
        key = (attribute, concept)
        if key not in self._text:
            self._text[key] = self.engine.embed_texts(attribute_prompts(self.grid, attribute, concept))
        return self._text[key]

    def embed(self, crops: Sequence[Image.Image]) -> np.ndarray:
        return np.asarray(self.engine.embed_images(list(crops)), dtype=np.float32)

    def __call__(self, crops: Sequence[Image.Image], concepts: Sequence[str]) -> dict[str, np.ndarray]:
        return self.classify(self.embed(crops), concepts)

    def classify(self, embeddings: np.ndarray, concepts: Sequence[str]) -> dict[str, np.ndarray]:
        """Probabilities from image embeddings already computed (softmax of the scaled cosines)."""
        scale = float(self.engine.model.logit_scale.detach().exp()) if hasattr(self.engine.model, "logit_scale") else 100.0
        probabilities = {}
        for attribute in self.grid.names:
            logits = np.stack([
                scale * self._text_embeddings(attribute, concept) @ embedding
                for embedding, concept in zip(embeddings, concepts)
            ])  # fmt: skip
            logits -= logits.max(axis=1, keepdims=True)
            exp = np.exp(logits)
            probabilities[attribute] = exp / exp.sum(axis=1, keepdims=True)
        return probabilities


# ---------------------------------------------------------------------------------------------
# Scoring groups
# ---------------------------------------------------------------------------------------------


@dataclass
class Group:
    """One group to score: its base image (None when the data has none) and its counterfactuals,
    each with the requested value per attribute."""

    concept: str
    base: Image.Image | None
    images: list[Image.Image]
    requested: list[dict[str, str]]


def score_columns(attributes: Sequence[str]) -> list[str]:
    """The score columns, in order (all but `verify_failures` numeric or boolean)."""
    return ([SCORE_PREFIX + "context_difference", SCORE_PREFIX + "context_ssim"]
            + [SCORE_PREFIX + f"adherence_{name}" for name in attributes]
            + [SCORE_PREFIX + f"kept_base_{name}" for name in attributes]
            + [SCORE_PREFIX + "person_area_ratio", SCORE_PREFIX + "duplicate_similarity",
               SCORE_PREFIX + "base_similarity", SCORE_PREFIX + "base_shows_requested",
               PASSED_COLUMN, FAILURES_COLUMN])  # fmt: skip


def score_features(attributes: Sequence[str]):
    """The `datasets.Features` of the score columns."""
    import datasets

    features = {}
    for name in score_columns(attributes):
        if name == FAILURES_COLUMN:
            features[name] = datasets.Value("string")
        elif name in (PASSED_COLUMN, SCORE_PREFIX + "base_shows_requested") or "kept_base_" in name:
            features[name] = datasets.Value("bool")
        else:
            features[name] = datasets.Value("float32")
    return datasets.Features(features)


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
        box = person_box(region, _as_array(image).shape[:2], config.crop_margin)
        crops.append(image.convert("RGB").crop(box))
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
                values = list(_attribute(grid, name).values)
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


def verdict(row: Mapping, attributes: Sequence[str], config: VerificationConfig) -> list[str]:
    """The names of the checks `row` (its score columns) fails; a null score is a skipped check."""
    failures = []

    def value(name):
        return row.get(SCORE_PREFIX + name)

    if value("context_difference") is not None and value("context_difference") > config.max_context_difference:
        failures.append(FAIL_CONTEXT_DIFFERENCE)
    if value("context_ssim") is not None and value("context_ssim") < config.min_context_ssim:
        failures.append(FAIL_CONTEXT_SSIM)
    for name in attributes:
        if value(f"adherence_{name}") is not None and value(f"adherence_{name}") < config.min_adherence:
            failures.append(FAIL_ADHERENCE.format(attribute=name))
    ratio = value("person_area_ratio")
    if ratio is not None and ratio < config.min_person_area_ratio:
        failures.append(FAIL_PERSON_MISSING)
    if ratio is not None and ratio > config.max_person_area_ratio:
        failures.append(FAIL_PERSON_DUPLICATED)
    # A near-copy of the base fails unless the base already showed the requested appearance (then
    # an unchanged person is the right answer). Near-copies among the counterfactuals are in
    # `verify_duplicate_similarity` for users to inspect: which of two copies is wrong is for
    # the adherence scores to say.
    copy = value("base_similarity")
    if copy is not None and copy > config.max_duplicate_similarity and not value("base_shows_requested"):
        failures.append(FAIL_DUPLICATE)
    return failures


# ---------------------------------------------------------------------------------------------
# Datasets: group, score (resumable), attach, split, summarise
# ---------------------------------------------------------------------------------------------


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
        unknown = sorted(present - set(_attribute(grid, name).values))
        if unknown:
            raise VerificationError(
                f"{where}, column {name!r}: value {unknown[0]!r} has no prompt in the attribute grid "
                f"(its values: {list(_attribute(grid, name).values)}); add it to the grid file (--attribute_grid_file)."
            )
    return attributes


def _attribute(grid, name: str):
    return next(attribute for attribute in grid.attributes if attribute.name == name)


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
    concepts = _column_names(dataset, "concept") if "concept" in dataset.column_names else [""] * len(dataset)
    values = {name: _column_names(dataset, name) for name in attributes}
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


def _column_names(dataset, column: str) -> list[str | None]:
    """A column's values as strings (`ClassLabel` ids turned into names)."""
    feature = dataset.features[column]
    values = dataset.select_columns([column])[column]
    if hasattr(feature, "int2str"):
        return [None if value is None else feature.int2str(value) for value in values]
    return [None if value is None else str(value) for value in values]


@dataclass
class VerificationSummary:
    """What the card's "Verification" section reports: pass rates per requested attribute value and
    per concept, rejections per check, groups left with < 2 rows, checks skipped, thresholds."""

    counterfactuals: int
    passed: int
    by_value: dict[str, dict[str, list[int]]]  # attribute -> value -> [passed, total]
    by_concept: dict[str, list[int]]
    failures: dict[str, int]
    small_groups: list[str]
    skipped: list[str]
    thresholds: dict

    def pass_rate(self, attribute: str, value: str) -> float:
        passed, total = self.by_value[attribute][value]
        return passed / total if total else float("nan")

    def to_dict(self) -> dict:
        return asdict(self)


def apply_verification(splits: Mapping, scores: Mapping[str, list], grid, config: VerificationConfig,
                       skipped: set[str] = frozenset()):  # fmt: skip
    """Add the score columns to every split (null on base rows and on skipped checks), move failing
    rows to a `rejected` split, and summarise. Returns (DatasetDict, VerificationSummary)."""
    import datasets

    attributes = [name for name in grid.names if name in next(iter(splits.values())).column_names]
    grid_values = {name: list(_attribute(grid, name).values) for name in attributes}
    features = score_features(attributes)
    kept, rejected = {}, []
    by_value: dict = {name: defaultdict(lambda: [0, 0]) for name in attributes}
    by_concept: dict = defaultdict(lambda: [0, 0])
    failure_counts: Counter = Counter()
    small_groups = []
    for split, dataset in splits.items():
        rows = scores[split]
        columns = {name: [] for name in features}
        passed_rows = []
        for row in rows:
            if row is None:  # a base image: nothing to verify
                for name in features:
                    columns[name].append(True if name == PASSED_COLUMN else None)
                passed_rows.append(True)
                continue
            failures = verdict(row, attributes, config)
            failure_counts.update(failures)
            for name in features:
                columns[name].append(row.get(name))
            columns[PASSED_COLUMN][-1] = not failures
            columns[FAILURES_COLUMN][-1] = ",".join(failures)
            passed_rows.append(not failures)
        for name, feature in features.items():
            dataset = dataset.add_column(name, columns[name], feature=feature)
        group_ids = dataset["group_id"] if "group_id" in dataset.column_names else None
        concepts = _column_names(dataset, "concept") if "concept" in dataset.column_names else ["all"] * len(dataset)
        values = {name: _column_names(dataset, name) for name in attributes}
        members = Counter()
        for index, (row, ok) in enumerate(zip(rows, passed_rows)):
            if group_ids is not None and ok:
                members[group_ids[index]] += 1
            if row is None:
                continue
            by_concept[concepts[index]][1] += 1
            by_concept[concepts[index]][0] += ok
            for name in attributes:
                by_value[name][values[name][index]][1] += 1
                by_value[name][values[name][index]][0] += ok
        if group_ids is not None:
            small_groups += sorted(group for group in dict.fromkeys(group_ids) if members[group] < 2)
        keep = [i for i, ok in enumerate(passed_rows) if ok]
        drop = [i for i, ok in enumerate(passed_rows) if not ok]
        kept[split] = dataset.select(keep)
        if drop:
            rejected.append(dataset.select(drop))
    if rejected:
        kept[REJECTED_SPLIT] = datasets.concatenate_datasets(rejected)
    counterfactuals = sum(total for _, total in by_concept.values())
    summary = VerificationSummary(
        counterfactuals=counterfactuals,
        passed=sum(passed for passed, _ in by_concept.values()),
        by_value={name: {value: list(by_value[name][value]) for value in grid_values[name] if value in by_value[name]}
                  for name in attributes},
        by_concept={name: list(pair) for name, pair in sorted(by_concept.items())},
        failures=dict(failure_counts.most_common()),
        small_groups=small_groups,
        skipped=sorted(skipped),
        thresholds={key: value for key, value in asdict(config).items() if key.startswith(("max_", "min_"))},
    )
    return datasets.DatasetDict(kept), summary


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


VERIFICATION_PLOT = "verification.png"


def plot_pass_rates(summary: VerificationSummary, path: str | Path) -> Path:
    """A bar chart of the pass rate per requested attribute value (one panel per attribute)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attributes = list(summary.by_value)
    figure, axes = plt.subplots(1, len(attributes), figsize=(3.2 * len(attributes), 2.8), squeeze=False)
    for axis, name in zip(axes[0], attributes):
        values = list(summary.by_value[name])
        rates = [100 * summary.pass_rate(name, value) for value in values]
        axis.bar(range(len(values)), rates, color="#4c72b0")
        axis.set_xticks(range(len(values)), [value.replace("_", " ") for value in values], rotation=30, ha="right", fontsize=8)
        axis.set_ylim(0, 100)
        axis.set_title(name, fontsize=9)
        axis.set_ylabel("passed (%)", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)


def _percent(passed: int, total: int) -> str:
    return f"{100 * passed / total:.1f}% ({passed}/{total})" if total else "—"


def render_verification_section(summary: VerificationSummary | None, plot: str | None = VERIFICATION_PLOT) -> str:
    """The card's "Verification" section (markdown): the generator's measured pass rates."""
    if summary is None:
        return ("Not verified: every generated row is included unchecked. `cf-hf verify` scores each "
                "counterfactual and moves the failures to a `rejected` split.")  # fmt: skip
    lines = [
        f"Every counterfactual was scored (`verify_*` columns): {_percent(summary.passed, summary.counterfactuals)} "
        f"passed; the others are in the `{REJECTED_SPLIT}` split, with `verify_failures` naming the checks they failed.",
        "The pass rate per requested value is the generator's own bias, measured: how often each requested "
        "appearance actually came out.",
        "",
        "| attribute | requested value | passed |",
        "|---|---|---:|",
    ]
    for name, values in summary.by_value.items():
        lines += [f"| {name} | {value} | {_percent(*pair)} |" for value, pair in values.items()]
    lines += ["", "| concept | passed |", "|---|---:|"]
    lines += [f"| {name} | {_percent(*pair)} |" for name, pair in summary.by_concept.items()]
    lines += ["", "Failures by check: " + (", ".join(f"{name}: {count}" for name, count in summary.failures.items()) or "none") + "."]
    lines.append("Checks skipped (inputs missing): " + (", ".join(summary.skipped) or "none") + ".")
    lines.append(f"Groups left with fewer than 2 rows: {len(summary.small_groups)}"
                 + (f" ({', '.join(summary.small_groups[:10])}{' …' if len(summary.small_groups) > 10 else ''})." if summary.small_groups else "."))  # fmt: skip
    lines.append("Thresholds: " + ", ".join(f"{key} {value}" for key, value in summary.thresholds.items()) + ".")
    if plot:
        lines += ["", f"![pass rate per requested value]({plot})"]
    return "\n".join(lines)
