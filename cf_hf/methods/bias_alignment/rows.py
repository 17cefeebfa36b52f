"""The bias-alignment module's training rows: attribute captions and their counterfactuals, CLIP's
cached embeddings of them (`BiasAlignmentData`), or the raw images and captions (`EncodedBiasAlignmentData`)."""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from cf_hf.methods.linear import MethodError

# The authors' FairFace caption (their attribute words are FairFace's labels).
DEFAULT_TEMPLATE = "This is the photo of a {race} {gender} aged {age}."


# ---------------------------------------------------------------------------------------------
# Captions and their counterfactuals


def template_fields(template: str) -> list[str]:
    """The `{name}` fields of a caption template."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def check_caption_setup(attributes: Sequence[str], template: str, labels: Mapping[str, Sequence], source: str) -> None:
    """Errors for an attribute the data lacks or the template does not mention, and for template
    fields without labels."""
    if not attributes:
        raise MethodError("name at least one attribute to remove")
    missing = [name for name in attributes if name not in labels]
    if missing:
        raise MethodError(f"{source} has no attribute {', '.join(map(repr, missing))}; it has {sorted(labels)}")
    fields = template_fields(template)
    unmentioned = [name for name in attributes if name not in fields]
    if unmentioned:
        raise MethodError(f"the caption template {template!r} does not mention {', '.join(map(repr, unmentioned))}: "
                          "no counterfactual caption can be made; add {" + unmentioned[0] + "} to it")
    unlabelled = [name for name in fields if name not in labels]
    if unlabelled:
        raise MethodError(f"the caption template {template!r} uses {unlabelled}, which {source} does not label "
                          f"(it labels {sorted(labels)})")


def attribute_captions(labels: Mapping[str, Sequence], attributes: Sequence[str], template: str = DEFAULT_TEMPLATE,
                       words: Mapping[str, Mapping[str, str]] | None = None, seed: int = 0,
                       source: str = "the data") -> tuple[list[str], list[str]]:
    """(captions, counterfactual captions) of labelled images.

    Args:
        labels: attribute -> (n,) label of each image.
        attributes: the attributes whose values the counterfactual swaps (gender: the other value;
            an attribute with more values: another value drawn uniformly, seeded).
        template: a caption with `{attribute}` fields; it must mention every attribute in `attributes`.
        words: attribute -> {label: word} for the caption (unset: the label itself).
    """
    check_caption_setup(attributes, template, labels, source)
    fields = template_fields(template)
    count = len(next(iter(labels.values())))
    for name in fields:
        empty = [row for row, value in enumerate(labels[name]) if value is None or value == ""]
        if empty:
            raise MethodError(f"{source}: {len(empty)} row(s) have no {name!r} label (rows {empty[:10]})")
    values = {name: sorted({str(value) for value in labels[name]}) for name in attributes}
    single = [name for name, found in values.items() if len(found) < 2]
    if single:
        raise MethodError(f"{source}: {single[0]!r} has the single value {values[single[0]]}: no counterfactual")
    words = words or {}
    rng = np.random.default_rng(seed)

    def word(name: str, value) -> str:
        return str(words.get(name, {}).get(str(value), value))

    captions, counterfactuals = [], []
    for row in range(count):
        own = {name: str(labels[name][row]) for name in fields}
        swapped = dict(own)
        for name in attributes:
            others = [value for value in values[name] if value != own[name]]
            swapped[name] = others[int(rng.integers(len(others)))]
        captions.append(template.format(**{name: word(name, value) for name, value in own.items()}))
        counterfactuals.append(template.format(**{name: word(name, value) for name, value in swapped.items()}))
    return captions, counterfactuals


# ---------------------------------------------------------------------------------------------
# Data


@dataclass
class BiasAlignmentData(torch.utils.data.Dataset):
    """Original (unnormalized) CLIP embeddings of the training rows.

    Attributes:
        image, text, counterfactual_text: (n, d) embeddings of each row's image, caption and
            counterfactual caption.
        partners: per row, the rows whose images are its image counterfactuals (same group, other
            person); empty for a row without any.
    """

    image: np.ndarray
    text: np.ndarray
    counterfactual_text: np.ndarray
    partners: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self):
        # Own writable copies: the cache hands out read-only memory maps, which torch will not wrap.
        self.image, self.text, self.counterfactual_text = (
            np.array(array, dtype=np.float32) for array in (self.image, self.text, self.counterfactual_text))
        shapes = {self.image.shape, self.text.shape, self.counterfactual_text.shape}
        if len(shapes) != 1 or self.image.ndim != 2:
            raise MethodError(f"image, text and counterfactual text embeddings must be (n, d) alike, got {sorted(shapes)}")
        if not self.partners:
            self.partners = [np.zeros(0, dtype=np.int64)] * len(self.image)
        if len(self.partners) != len(self.image):
            raise MethodError(f"{len(self.image)} rows but {len(self.partners)} partner lists")

    def __len__(self) -> int:
        return len(self.image)

    def __getitem__(self, index: int) -> dict:
        partners = self.partners[index]
        # Drawn with torch's generator, which the Trainer seeds: a run is reproducible.
        partner = int(partners[torch.randint(len(partners), ()).item()]) if len(partners) else index
        return {"image_features": torch.from_numpy(self.image[index]),
                "text_features": torch.from_numpy(self.text[index]),
                "counterfactual_text_features": torch.from_numpy(self.counterfactual_text[index]),
                "counterfactual_image_features": torch.from_numpy(self.image[partner]),
                "has_image_counterfactual": torch.tensor(len(partners) > 0)}

    def __getitems__(self, indices: list[int]) -> dict:
        """A whole batch at once (the DataLoader's batched fetch): one indexing per array instead of a
        dict per row, so that an epoch over cached embeddings is not spent assembling batches."""
        indices = np.asarray(indices, dtype=np.int64)
        draws = torch.rand(len(indices)).numpy()
        partners = np.array([self.partners[index][int(draw * len(self.partners[index]))]
                             if len(self.partners[index]) else index for index, draw in zip(indices, draws)])
        return {"image_features": torch.from_numpy(self.image[indices]),
                "text_features": torch.from_numpy(self.text[indices]),
                "counterfactual_text_features": torch.from_numpy(self.counterfactual_text[indices]),
                "counterfactual_image_features": torch.from_numpy(self.image[partners]),
                "has_image_counterfactual": torch.from_numpy(partners != indices)}

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
        """Rows of every part, partners re-indexed."""
        offsets = np.cumsum([0] + [len(part) for part in parts])
        return cls(np.concatenate([part.image for part in parts]), np.concatenate([part.text for part in parts]),
                   np.concatenate([part.counterfactual_text for part in parts]),
                   [partners + offset for part, offset in zip(parts, offsets) for partners in part.partners])


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


def gallery_data(engine, gallery, attributes: Sequence[str], template: str = DEFAULT_TEMPLATE,
                 words: Mapping[str, Mapping[str, str]] | None = None, seed: int = 0) -> BiasAlignmentData:
    """The BA rows of an attribute-labelled gallery: captions from its labels, embedded by `engine`
    (the original CLIP; unnormalized, cached)."""
    captions, counterfactuals = attribute_captions(gallery.attributes, attributes, template, words, seed,
                                                   source=f"the gallery {gallery.name!r}")
    return BiasAlignmentData(engine.embed_images(gallery.images, gallery.fingerprint, normalize=False),
                             engine.embed_texts(captions, normalize=False),
                             engine.embed_texts(counterfactuals, normalize=False))


def counterfactual_data(engine, dataset) -> BiasAlignmentData:
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
    return BiasAlignmentData(image, text, text.copy(), group_partners(list(dataset["group_id"])))


class EncodedBiasAlignmentData(torch.utils.data.Dataset):
    """The same rows as `BiasAlignmentData`, as pixels and tokens: CLIP encodes them at every step
    (the benchmark's baseline)."""

    def __init__(self, images: Sequence, captions: Sequence[str], counterfactual_captions: Sequence[str], processor,
                 partners: list[np.ndarray] | None = None):
        from cf_hf.evaluation.embedding import open_image

        self.open_image = open_image
        self.images, self.captions, self.counterfactual_captions = images, list(captions), list(counterfactual_captions)
        self.processor = processor
        self.partners = partners or [np.zeros(0, dtype=np.int64)] * len(self.captions)

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> dict:
        partners = self.partners[index]
        partner = int(partners[torch.randint(len(partners), ()).item()]) if len(partners) else index
        return {"index": index, "partner": partner, "has_image_counterfactual": len(partners) > 0}

    def collate(self, rows: list[dict]) -> dict:
        pixels = self.processor.image_processor(
            images=[self.open_image(self.images[row[key]]) for key in ("index", "partner") for row in rows],
            return_tensors="pt")["pixel_values"]
        tokens = self.processor.tokenizer(
            [self.captions[row["index"]] for row in rows] + [self.counterfactual_captions[row["index"]] for row in rows],
            padding=True, truncation=True, return_tensors="pt")
        return {"pixel_values": pixels, "input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"],
                "has_image_counterfactual": torch.tensor([row["has_image_counterfactual"] for row in rows])}
