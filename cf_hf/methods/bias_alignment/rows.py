"""The bias-alignment module's training rows: CLIP's cached embeddings of the images, their captions
and every counterfactual caption (`BiasAlignmentData`), or the raw images and captions
(`EncodedBiasAlignmentData`); both draw a row's counterfactual caption (and image partner) again at
every fetch, from the training seed and the epoch (`EpochDraws`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from cf_hf.methods.bias_alignment.captions import CaptionRows, CaptionSetting, caption_rows
from cf_hf.methods.linear import MethodError

# ---------------------------------------------------------------------------------------------
# Draws


class EpochDraws:
    """Uniform draws in [0, 1) per row and epoch: (row, 0) picks the counterfactual caption, (row, 1) the
    image partner. A pure function of (seed, epoch, row): a row fetched twice in one epoch (a resumed
    run) draws the same, in another epoch again (the authors redraw at every fetch, once per epoch)."""

    STREAMS = 2

    def __init__(self, rows: int, seed: int = 0):
        self.rows, self.seed, self.epoch = rows, int(seed), 0
        self._table: np.ndarray | None = None

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next fetches belong to (the Trainer sets it at each epoch's start)."""
        if int(epoch) != self.epoch:
            self.epoch, self._table = int(epoch), None

    def __call__(self, indices: np.ndarray) -> np.ndarray:
        """(len(indices), 2) draws of the rows `indices` in the current epoch."""
        if self._table is None:
            self._table = np.random.default_rng([self.seed, self.epoch]).random((self.rows, self.STREAMS))
        return self._table[indices]


def _flat_choices(choices: Sequence[np.ndarray], options: int, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, count, flat) of per-row index lists into `options` things, checked."""
    counts = np.asarray([len(row) for row in choices], dtype=np.int64)
    flat = np.concatenate([np.asarray(row, dtype=np.int64) for row in choices]) if len(choices) else np.zeros(0, np.int64)
    if len(flat) and (flat.min() < 0 or flat.max() >= options):
        raise MethodError(f"{what} index out of range: {options} {what}s, indices from {flat.min()} to {flat.max()}")
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64), counts, flat


def _pick(start: np.ndarray, count: np.ndarray, flat: np.ndarray, indices: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """(k,) one of each row's choices, uniformly by `draws` (k,) in [0, 1); -1 for a row with none."""
    counts = count[indices]
    if not len(flat):
        return np.full(len(indices), -1, dtype=np.int64)
    offsets = np.minimum((draws * counts).astype(np.int64), counts - 1)
    positions = np.where(counts > 0, start[indices] + offsets, 0)
    return np.where(counts > 0, flat[positions], -1)


# ---------------------------------------------------------------------------------------------
# Data


@dataclass
class BiasAlignmentData(torch.utils.data.Dataset):
    """Original (unnormalized) CLIP embeddings of the training rows.

    Attributes:
        image, text: (n, d) embeddings of each row's image and caption.
        counterfactual_text: (m, d) embeddings of the distinct counterfactual captions.
        partners: per row, the rows whose images are its image counterfactuals (same group, other
            person); empty for a row without any.
        counterfactual_choices: per row, the indices into `counterfactual_text` it draws its
            counterfactual from at every fetch; unset: row i shows `counterfactual_text[i]` (m = n).
        seed: the draws' seed (`EpochDraws`).
    """

    image: np.ndarray
    text: np.ndarray
    counterfactual_text: np.ndarray
    partners: list[np.ndarray] = field(default_factory=list)
    counterfactual_choices: list[np.ndarray] = field(default_factory=list)
    seed: int = 0

    def __post_init__(self):
        # Own writable copies: the cache hands out read-only memory maps, which torch will not wrap.
        self.image, self.text, self.counterfactual_text = (
            np.array(array, dtype=np.float32) for array in (self.image, self.text, self.counterfactual_text))
        if not self.counterfactual_choices:
            self.counterfactual_choices = [np.asarray([row], dtype=np.int64) for row in range(len(self.counterfactual_text))]
            shapes = {self.image.shape, self.text.shape, self.counterfactual_text.shape}
        else:
            shapes = {self.image.shape, self.text.shape}
        if len(shapes) != 1 or self.image.ndim != 2 or self.counterfactual_text.ndim != 2:
            raise MethodError(f"image, text and counterfactual text embeddings must be (n, d) alike, got "
                              f"{sorted(shapes | {self.counterfactual_text.shape})}")
        if self.counterfactual_text.shape[1] != self.image.shape[1]:
            raise MethodError(f"counterfactual text embeddings are {self.counterfactual_text.shape[1]}-d, images "
                              f"{self.image.shape[1]}-d")
        if len(self.counterfactual_choices) != len(self.image):
            raise MethodError(f"{len(self.image)} rows but {len(self.counterfactual_choices)} counterfactual choice lists")
        empty = [row for row, choices in enumerate(self.counterfactual_choices) if len(choices) == 0]
        if empty:
            raise MethodError(f"{len(empty)} row(s) have no counterfactual caption to draw (rows {empty[:10]})")
        self._choices = _flat_choices(self.counterfactual_choices, len(self.counterfactual_text), "counterfactual caption")
        if not self.partners:
            self.partners = [np.zeros(0, dtype=np.int64)] * len(self.image)
        if len(self.partners) != len(self.image):
            raise MethodError(f"{len(self.image)} rows but {len(self.partners)} partner lists")
        self._partners = _flat_choices(self.partners, len(self.image), "partner row")
        self.draws = EpochDraws(len(self.image), self.seed)

    def __len__(self) -> int:
        return len(self.image)

    def set_epoch(self, epoch: int) -> None:
        """Draw the counterfactual captions and image partners of `epoch` from now on."""
        self.draws.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict:
        return {name: value[0] for name, value in self.__getitems__([index]).items()}

    def __getitems__(self, indices: list[int]) -> dict:
        """A whole batch at once (the DataLoader's batched fetch): one indexing per array instead of a
        dict per row, so that an epoch over cached embeddings is not spent assembling batches.

        Returns (k, d) `image_features`, `text_features`, `counterfactual_text_features` (this epoch's
        draw), `counterfactual_image_features` (a partner's image, the row's own without partners) and
        (k,) bool `has_image_counterfactual`."""
        indices = np.asarray(indices, dtype=np.int64)
        draws = self.draws(indices)
        counterfactuals = _pick(*self._choices, indices, draws[:, 0])
        partners = _pick(*self._partners, indices, draws[:, 1])
        has_partner = partners >= 0
        partners = np.where(has_partner, partners, indices)
        return {"image_features": torch.from_numpy(self.image[indices]),
                "text_features": torch.from_numpy(self.text[indices]),
                "counterfactual_text_features": torch.from_numpy(self.counterfactual_text[counterfactuals]),
                "counterfactual_image_features": torch.from_numpy(self.image[partners]),
                "has_image_counterfactual": torch.from_numpy(has_partner)}

    @staticmethod
    def collate(batch):
        """The batch `__getitems__` assembled, as is (rows fetched one by one are stacked)."""
        if isinstance(batch, dict):
            return batch
        from transformers import default_data_collator

        return default_data_collator(batch)

    @property
    def image_counterfactual_rows(self) -> int:
        return int(sum(len(partners) > 0 for partners in self.partners))

    @classmethod
    def concatenate(cls, parts: Sequence[BiasAlignmentData]) -> BiasAlignmentData:
        """Rows of every part, partners and counterfactual choices re-indexed; the first part's seed."""
        offsets = np.cumsum([0] + [len(part) for part in parts])
        caption_offsets = np.cumsum([0] + [len(part.counterfactual_text) for part in parts])
        return cls(np.concatenate([part.image for part in parts]), np.concatenate([part.text for part in parts]),
                   np.concatenate([part.counterfactual_text for part in parts]),
                   [partners + offset for part, offset in zip(parts, offsets) for partners in part.partners],
                   [choices + offset for part, offset in zip(parts, caption_offsets)
                    for choices in part.counterfactual_choices],
                   seed=parts[0].seed)


def group_partners(group_ids: Sequence) -> list[np.ndarray]:
    """Per row, the other rows of its group."""
    members: dict = {}
    for row, group in enumerate(group_ids):
        members.setdefault(group, []).append(row)
    return [np.asarray([other for other in members[group] if other != row], dtype=np.int64)
            for row, group in enumerate(group_ids)]


class _Images:
    """A `datasets` image column read lazily (the embedding engine opens one batch at a time)."""

    def __init__(self, dataset, column: str = "image"):
        self.dataset, self.column = dataset, column

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.dataset[int(index)][self.column]

    def get_batch(self, start: int, stop: int):
        return self.dataset[start:stop][self.column]


def gallery_data(engine, gallery, setting: CaptionSetting, seed: int = 0) -> BiasAlignmentData:
    """The BA rows of an attribute-labelled gallery: captions from its labels (`setting`), each row's
    image and caption and every distinct counterfactual caption embedded by `engine` (the original CLIP;
    unnormalized, cached); the counterfactual is drawn at every fetch, seeded by `seed` and the epoch."""
    rows = caption_rows(gallery.attributes, setting, source=f"the gallery {gallery.name!r}")
    return BiasAlignmentData(engine.embed_images(gallery.images, gallery.fingerprint, normalize=False),
                             engine.embed_texts(rows.captions, normalize=False),
                             engine.embed_texts(rows.counterfactual_captions, normalize=False),
                             counterfactual_choices=rows.counterfactual_choices, seed=seed)


def counterfactual_data(engine, dataset, seed: int = 0) -> BiasAlignmentData:
    """The BA rows of cf_hf's counterfactual dataset (columns image, caption, group_id): every image is
    an image counterfactual of the others in its group; the neutral caption is its own counterfactual."""
    from cf_hf.methods.training_utils import load_training_dataset

    dataset = load_training_dataset(dataset)
    missing = [column for column in ("image", "caption", "group_id") if column not in dataset.column_names]
    if missing:
        raise MethodError(f"the counterfactual dataset has no column {missing}; it has {dataset.column_names}")
    captions = [str(caption) for caption in dataset["caption"]]
    text = engine.embed_texts(captions, normalize=False)
    fingerprint = f"dataset-{getattr(dataset, '_fingerprint', None) or len(dataset)}"
    image = engine.embed_images(_Images(dataset), fingerprint, normalize=False)
    return BiasAlignmentData(image, text, text.copy(), group_partners(list(dataset["group_id"])), seed=seed)


class EncodedBiasAlignmentData(torch.utils.data.Dataset):
    """The same rows as `BiasAlignmentData`, as pixels and tokens: CLIP encodes them at every step
    (the benchmark's baseline); the counterfactual caption and image partner drawn alike."""

    def __init__(self, images: Sequence, captions: CaptionRows, processor, partners: list[np.ndarray] | None = None,
                 seed: int = 0):
        from cf_hf.evaluation.embedding import open_image

        self.open_image = open_image
        self.images, self.captions, self.processor = images, captions, processor
        rows = len(captions.captions)
        self.partners = partners or [np.zeros(0, dtype=np.int64)] * rows
        self._choices = _flat_choices(captions.counterfactual_choices, len(captions.counterfactual_captions),
                                      "counterfactual caption")
        self._partners = _flat_choices(self.partners, rows, "partner row")
        self.draws = EpochDraws(rows, seed)

    def __len__(self) -> int:
        return len(self.captions.captions)

    def set_epoch(self, epoch: int) -> None:
        """Draw the counterfactual captions and image partners of `epoch` from now on."""
        self.draws.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict:
        indices = np.asarray([index], dtype=np.int64)
        draws = self.draws(indices)
        partner = int(_pick(*self._partners, indices, draws[:, 1])[0])
        counterfactual = int(_pick(*self._choices, indices, draws[:, 0])[0])
        return {"index": index, "partner": partner if partner >= 0 else index, "has_image_counterfactual": partner >= 0,
                "counterfactual": counterfactual}

    def collate(self, rows: list[dict]) -> dict:
        pixels = self.processor.image_processor(
            images=[self.open_image(self.images[row[key]]) for key in ("index", "partner") for row in rows],
            return_tensors="pt")["pixel_values"]
        tokens = self.processor.tokenizer(
            [self.captions.captions[row["index"]] for row in rows]
            + [self.captions.counterfactual_captions[row["counterfactual"]] for row in rows],
            padding=True, truncation=True, return_tensors="pt")
        return {"pixel_values": pixels, "input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"],
                "has_image_counterfactual": torch.tensor([row["has_image_counterfactual"] for row in rows])}
