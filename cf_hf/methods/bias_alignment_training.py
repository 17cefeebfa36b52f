"""Training the bias-alignment module (`cf_hf.methods.bias_alignment`) with the HF `Trainer`.

Data: an attribute-labelled face/person set (`cf_hf.evaluation.AttributeGallery`, e.g. FairFace train
through `cf_hf.evaluation.load_fairface`), each image captioned from its labels with a template ("This is
the photo of a {race} {gender} aged {age}.") and, for the chosen attribute(s), an attribute-swapped
counterfactual caption. Optionally, cf_hf's counterfactual dataset (same scene, another person; rows
sharing a `group_id`) adds image counterfactuals, which the paper could not make.

CLIP is frozen, so its embeddings of the training rows are computed once, through the evaluation
harness's `EmbeddingEngine` and its cache (unnormalised, as the heads take them), and the Trainer steps
over embeddings only (`BiasAlignmentData`). `EncodedBiasAlignmentData` feeds images and captions
instead (CLIP re-encodes them every step): the benchmark's baseline, same losses.

One step (`BiasAlignmentTrainer.compute_loss`), as in the authors' code: each caption is replaced by
its counterfactual with probability `counterfactual_probability` (and, with image counterfactuals, each
image by another member of its group); L_ba and L_cd are scored against [batch; FIFO queue] of original
unit-norm embeddings; with `use_momentum`, an EMA copy of the heads gives L_cd targets mixed in with
`momentum_ratio` once `momentum_warmup_epochs` have passed; `L = α L_cd + (1 − α) L_ba`.
"""

from __future__ import annotations

import copy
import json
import logging
import string
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Trainer, TrainingArguments

from cf_hf.methods.bias_alignment import (
    BiasAlignedCLIPModel,
    bias_alignment_loss,
    bias_embeddings,
    combined_loss,
    counterfactual_debiasing_loss,
)
from cf_hf.methods.linear import MethodError

logger = logging.getLogger(__name__)

# The authors' FairFace caption (their attribute words are FairFace's labels).
DEFAULT_TEMPLATE = "This is the photo of a {race} {gender} aged {age}."
# The authors' settings (docs/method.md §6): α, queue size, momentum, momentum ratio and warm-up.
DEFAULT_ALPHA = 0.3
DEFAULT_QUEUE_SIZE = 65536
DEFAULT_MOMENTUM = 0.995
DEFAULT_MOMENTUM_RATIO = 0.4
DEFAULT_MOMENTUM_WARMUP_EPOCHS = 5.0
COUNTERFACTUAL_PROBABILITY = 0.5


@dataclass
class BiasAlignmentArguments(TrainingArguments):
    """`TrainingArguments` plus the BA losses' settings. Defaults that differ from the Trainer's are
    the authors' (Adam, lr 5e-6, batch 512); they stopped early on ABLE, which is not done here."""

    alpha: float = field(default=DEFAULT_ALPHA, metadata={"help": "weight of L_cd in L = α L_cd + (1 − α) L_ba, in [0, 1]"})
    queue_size: int = field(default=DEFAULT_QUEUE_SIZE,
                            metadata={"help": "length of the FIFO queues of original embeddings; at least the batch size"})
    counterfactual_probability: float = field(
        default=COUNTERFACTUAL_PROBABILITY,
        metadata={"help": "probability that a caption (and, with image counterfactuals, an image) is replaced by "
                          "its counterfactual in L_cd"})
    use_momentum: bool = field(default=True, metadata={"help": "mix momentum-teacher targets into L_cd"})
    momentum: float = field(default=DEFAULT_MOMENTUM, metadata={"help": "EMA factor of the momentum heads"})
    momentum_ratio: float = field(default=DEFAULT_MOMENTUM_RATIO,
                                  metadata={"help": "share of the momentum heads' distribution in the L_cd targets"})
    momentum_warmup_epochs: float = field(default=DEFAULT_MOMENTUM_WARMUP_EPOCHS,
                                          metadata={"help": "epochs before the momentum targets are mixed in"})
    image_head_size: int | None = field(default=None, metadata={"help": "hidden width of the image head; unset: d"})
    shared_head_size: int | None = field(default=None, metadata={"help": "hidden width of the shared head; unset: 2d"})
    learning_rate: float = field(default=5e-6, metadata={"help": "Adam learning rate (the authors')"})
    per_device_train_batch_size: int = field(default=512, metadata={"help": "batch size (the authors')"})
    weight_decay: float = field(default=0.0, metadata={"help": "0: Adam, as the authors"})
    save_strategy: str = field(default="epoch", metadata={"help": "checkpoint every epoch, so that a run resumes"})
    save_total_limit: int | None = field(default=2, metadata={"help": "checkpoints kept"})
    remove_unused_columns: bool = field(default=False, metadata={"help": "the rows are embeddings, kept whole"})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "a checkpoint folder, or 'last' for the latest in output_dir"})

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.alpha <= 1.0:
            raise MethodError(f"alpha={self.alpha} is outside [0, 1]: L = α L_cd + (1 − α) L_ba")
        if self.queue_size < self.per_device_train_batch_size:
            raise MethodError(f"queue_size={self.queue_size} is smaller than a batch "
                              f"({self.per_device_train_batch_size}): the queue must hold at least one batch")
        for name in ("counterfactual_probability", "momentum", "momentum_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise MethodError(f"{name}={getattr(self, name)} is outside [0, 1]")

    def loss_settings(self) -> dict:
        """The settings the checkpoint's config records."""
        return {name: getattr(self, name) for name in (
            "alpha", "queue_size", "counterfactual_probability", "use_momentum", "momentum", "momentum_ratio",
            "momentum_warmup_epochs", "learning_rate", "per_device_train_batch_size", "num_train_epochs",
            "max_steps", "seed")}


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
    """Original (unnormalised) CLIP embeddings of the training rows.

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
    (the original CLIP; unnormalised, cached)."""
    captions, counterfactuals = attribute_captions(gallery.attributes, attributes, template, words, seed,
                                                   source=f"the gallery {gallery.name!r}")
    return BiasAlignmentData(engine.embed_images(gallery.images, gallery.fingerprint, normalize=False),
                             engine.embed_texts(captions, normalize=False),
                             engine.embed_texts(counterfactuals, normalize=False))


def counterfactual_data(engine, dataset) -> BiasAlignmentData:
    """The BA rows of cf_hf's counterfactual dataset (columns image, caption, group_id): every image is
    an image counterfactual of the others in its group; the neutral caption is its own counterfactual."""
    from cf_hf.training import load_training_dataset

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


# ---------------------------------------------------------------------------------------------
# The Trainer


class FeatureQueue:
    """A FIFO queue of unit-norm embeddings (MoCo-style), (size, d), filled as batches arrive."""

    def __init__(self, size: int, dimension: int, device, dtype):
        self.embeddings = torch.zeros(size, dimension, device=device, dtype=dtype)
        self.pointer = 0
        self.filled = 0

    def keys(self, batch: torch.Tensor) -> torch.Tensor:
        """[batch; queue] of what is queued so far, (n + filled, d)."""
        return torch.cat([batch, self.embeddings[:self.filled]])

    @torch.no_grad()
    def push(self, batch: torch.Tensor) -> None:
        size = len(self.embeddings)
        rows = (self.pointer + torch.arange(len(batch), device=batch.device)) % size
        self.embeddings[rows] = batch.detach().to(self.embeddings.dtype)
        self.pointer = (self.pointer + len(batch)) % size
        self.filled = min(size, self.filled + len(batch))


class BiasAlignmentTrainer(Trainer):
    """A `Trainer` whose loss is the BA module's: the queues and the momentum heads live here, not in
    the checkpoint (after a resume the queues fill again)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.queues: dict[str, FeatureQueue] = {}
        self.momentum_heads = None
        self.last_losses: dict[str, float] = {}

    def log(self, logs: dict, *args, **kwargs) -> None:
        """The Trainer's log, with the last step's L_cd and L_ba next to the loss."""
        if "loss" in logs:
            logs.update(self.last_losses)
        super().log(logs, *args, **kwargs)

    def _original_features(self, model: BiasAlignedCLIPModel, inputs: dict):
        if "image_features" in inputs:
            return (inputs["image_features"], inputs["text_features"], inputs["counterfactual_text_features"],
                    inputs["counterfactual_image_features"])
        with torch.no_grad():  # CLIP is frozen: re-encoding is the benchmark's baseline
            images = model.original_image_features(inputs["pixel_values"])
            texts = model.original_text_features(inputs["input_ids"], inputs["attention_mask"])
        half = len(images) // 2
        return images[:half], texts[:half], texts[half:], images[half:]

    @torch.no_grad()
    def _update_momentum(self, heads) -> None:
        if self.momentum_heads is None:
            self.momentum_heads = copy.deepcopy(heads).requires_grad_(False)
            return
        for momentum, parameter in zip(self.momentum_heads.parameters(), heads.parameters()):
            momentum.mul_(self.args.momentum).add_(parameter.detach(), alpha=1 - self.args.momentum)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        args = self.args
        unwrapped = self.accelerator.unwrap_model(model)
        heads = unwrapped.bias_alignment
        image, text, counterfactual_text, counterfactual_image = self._original_features(unwrapped, inputs)
        rows = len(image)
        if not self.queues:
            self.queues = {tower: FeatureQueue(args.queue_size, image.shape[1], image.device, image.dtype)
                           for tower in ("image", "text")}
        shown_text = torch.where((torch.rand(rows, device=text.device) < args.counterfactual_probability)[:, None],
                                 counterfactual_text, text)
        swap_image = torch.rand(rows, device=image.device) < args.counterfactual_probability
        swap_image &= inputs["has_image_counterfactual"].to(image.device).bool()
        shown_image = torch.where(swap_image[:, None], counterfactual_image, image)

        original_image, original_text = F.normalize(image, dim=-1), F.normalize(text, dim=-1)
        image_keys, text_keys = self.queues["image"].keys(original_image), self.queues["text"].keys(original_text)
        temperature = heads.clamped_temperature()
        loss_ba = bias_alignment_loss(bias_embeddings(image, heads.debias_image(image)),
                                      bias_embeddings(text, heads.debias_text(text)), image_keys, text_keys, temperature)
        image_targets = text_targets = None
        if args.use_momentum:
            self._update_momentum(heads)
            if (self.state.epoch or 0.0) >= args.momentum_warmup_epochs:
                with torch.no_grad():
                    tau = temperature.detach()
                    ratio = args.momentum_ratio
                    momentum_image = F.normalize(self.momentum_heads.debias_image(shown_image), dim=-1)
                    momentum_text = F.normalize(self.momentum_heads.debias_text(shown_text), dim=-1)
                    image_targets = (ratio * F.softmax(momentum_image @ text_keys.t() / tau, dim=-1)
                                     + (1 - ratio) * F.softmax(original_image @ text_keys.t() / tau, dim=-1))
                    text_targets = (ratio * F.softmax(momentum_text @ image_keys.t() / tau, dim=-1)
                                    + (1 - ratio) * F.softmax(original_text @ image_keys.t() / tau, dim=-1))
        loss_cd = counterfactual_debiasing_loss(
            F.normalize(heads.debias_image(shown_image), dim=-1), F.normalize(heads.debias_text(shown_text), dim=-1),
            original_image, original_text, image_keys, text_keys, temperature, image_targets, text_targets)
        loss = combined_loss(loss_cd, loss_ba, args.alpha)
        self.queues["image"].push(original_image)
        self.queues["text"].push(original_text)
        self.last_losses = {"loss_cd": float(loss_cd.detach()), "loss_ba": float(loss_ba.detach())}
        return (loss, {"loss_cd": loss_cd, "loss_ba": loss_ba}) if return_outputs else loss


# ---------------------------------------------------------------------------------------------
# Entry points


def bias_aligned_from(original: str | Path, args: BiasAlignmentArguments) -> tuple[BiasAlignedCLIPModel, object]:
    """The original CLIP (its processor too) wrapped with fresh heads (seeded by `args.seed`)."""
    from cf_hf.methods.linear import load_clip

    clip, processor = load_clip(original)
    torch.manual_seed(args.seed)
    return BiasAlignedCLIPModel.from_clip(clip, image_head_size=args.image_head_size,
                                          shared_head_size=args.shared_head_size), processor


def train_bias_alignment(original: str | Path, data: torch.utils.data.Dataset, args: BiasAlignmentArguments,
                         record: dict | None = None) -> Path:
    """Train the BA heads on `data` (`BiasAlignmentData`, or `EncodedBiasAlignmentData`) and save the
    bias-aligned checkpoint (whole CLIP + heads, safetensors, processor) in `args.output_dir`.

    `args.resume_from_checkpoint` ('last' or a folder) resumes an interrupted run; `record` (what the
    data was) is written into the config with the loss settings.
    """
    from cf_hf.training import resolve_checkpoint

    if len(data) == 0:
        raise MethodError("no training rows")
    if args.queue_size < min(args.per_device_train_batch_size, len(data)):
        raise MethodError(f"queue_size={args.queue_size} is smaller than a batch")
    resume = resolve_checkpoint(args.resume_from_checkpoint, args.output_dir)
    model, processor = bias_aligned_from(original, args)
    collator = getattr(data, "collate", None)
    trainer = BiasAlignmentTrainer(model=model, args=args, train_dataset=data, data_collator=collator)
    trainer.train(resume_from_checkpoint=resume)
    final = trainer.accelerator.unwrap_model(trainer.model)
    final.config.bias_alignment = json.loads(json.dumps(
        {"losses": args.loss_settings(), "original": str(original), **(record or {})}, default=str))
    final.save_pretrained(args.output_dir)
    processor.save_pretrained(args.output_dir)
    return Path(args.output_dir)


# The variants the comparison trains: name -> (α, image counterfactuals). The paper's model, the
# model with cf_hf's image counterfactuals, and the paper's two ablations.
VARIANTS = {
    "bias_alignment": (None, False),
    "bias_alignment_image_cf": (None, True),
    "bias_alignment_ba_only": (0.0, False),
    "bias_alignment_cd_only": (1.0, False),
}


def fit_bias_alignment(original: str | Path, output_dir: str | Path, gallery, attribute: str | Sequence[str],
                       training_arguments: BiasAlignmentArguments | None = None, template: str = DEFAULT_TEMPLATE,
                       words: Mapping[str, Mapping[str, str]] | None = None, counterfactual_dataset=None,
                       variants: Sequence[str] = ("bias_alignment",), embedding_config=None) -> list:
    """The BA module trained on an attribute-labelled gallery (e.g. FairFace train): one checkpoint
    per variant in `VARIANTS` (`bias_alignment_image_cf` needs `counterfactual_dataset`, cf_hf's
    counterfactual dataset or its folder). Checkpoints are named `<variant>-alpha=<α>`."""
    from cf_hf.evaluation.embedding import EmbeddingEngine
    from cf_hf.methods.base import MethodCheckpoint

    attributes = [attribute] if isinstance(attribute, str) else list(attribute)
    unknown = [name for name in variants if name not in VARIANTS]
    if unknown:
        raise MethodError(f"unknown bias-alignment variant(s) {unknown}: choose from {list(VARIANTS)}")
    if any(VARIANTS[name][1] for name in variants) and counterfactual_dataset is None:
        raise MethodError("bias_alignment_image_cf needs the counterfactual dataset (image counterfactuals)")
    base = training_arguments or BiasAlignmentArguments(output_dir=str(output_dir))
    output_dir = Path(output_dir)
    start = time.perf_counter()
    engine = EmbeddingEngine.from_pretrained(original, embedding_config, name=Path(str(original)).name)
    data = gallery_data(engine, gallery, attributes, template, words, seed=base.seed)
    image_data = None
    if any(VARIANTS[name][1] for name in variants):
        image_data = BiasAlignmentData.concatenate([data, counterfactual_data(engine, counterfactual_dataset)])
    embedding_seconds = time.perf_counter() - start
    checkpoints = []
    for name in variants:
        started = time.perf_counter()
        alpha, image_counterfactuals = VARIANTS[name]
        alpha = base.alpha if alpha is None else alpha
        checkpoint_name = f"{name}-alpha={alpha:g}"
        args = copy.deepcopy(base)  # the same settings; α in [0, 1] (checked by `base` or fixed)
        args.output_dir, args.alpha = str(output_dir / checkpoint_name), alpha
        rows = image_data if image_counterfactuals else data
        record = {"variant": name, "attributes": attributes, "template": template, "gallery": gallery.name,
                  "rows": len(rows), "image_counterfactual_rows": rows.image_counterfactual_rows}
        path = train_bias_alignment(original, rows, args, record)
        checkpoints.append(MethodCheckpoint(
            name=checkpoint_name, method="bias_alignment", path=path,
            settings={"variant": name, "alpha": alpha, "attribute": "+".join(attributes),
                      "image_counterfactuals": image_counterfactuals},
            swept=None, fit_seconds=embedding_seconds + time.perf_counter() - started))
    return checkpoints



# ---------------------------------------------------------------------------------------------
# `cf-hf train-ba`


@dataclass
class TrainBiasAlignmentCommandArguments:
    """The `cf-hf train-ba` options that are not `BiasAlignmentArguments`."""

    fairface: str = field(metadata={"help": "FairFace folder with the labelled training images (the train split)"})
    model_name_or_path: str = field(default="openai/clip-vit-base-patch16",
                                    metadata={"help": "the original CLIP (kept frozen); the authors' ViT-B/16 by default"})
    fairface_csv: str | None = field(default=None, metadata={"help": "labels CSV; unset: FAIRFACE/fairface_label_train.csv"})
    fairface_padding: str | None = field(default=None, metadata={"help": "which FairFace crop when both are present",
                                                                  "choices": ["0.25", "1.25"]})
    fairface_labels: str | None = field(default=None, metadata={
        "help": "YAML/JSON 'attribute: [values]' of a CSV that does not use FairFace's own label values"})
    skip_missing: bool = field(default=False, metadata={"help": "skip (and count) rows whose image is missing"})
    attribute: list[str] = field(default_factory=lambda: ["gender"], metadata={
        "help": "attribute(s) whose values the counterfactual captions swap, space-separated"})
    caption_template: str = field(default=DEFAULT_TEMPLATE, metadata={
        "help": "caption of a labelled image, with {attribute} fields; must mention every --attribute"})
    caption_words: str | None = field(default=None, metadata={
        "help": "YAML/JSON 'attribute: {label: word}' to write labels as other words in the captions"})
    counterfactual_dataset: str | None = field(default=None, metadata={
        "help": "cf_hf's counterfactual dataset (folder or Hub id): adds image counterfactuals to L_cd"})
    embedding_batch_size: int = field(default=64, metadata={"help": "images or texts per CLIP forward pass"})
    cache_dir: str | None = field(default=None, metadata={
        "help": "cache of CLIP's embeddings of the training rows; unset: OUTPUT_DIR/embeddings"})
    device: str = field(default="cpu", metadata={"help": "device CLIP embeds the rows on"})
    no_progress: bool = field(default=False, metadata={"help": "hide every progress bar"})


def _caption_words(path: str | None) -> dict | None:
    if path is None:
        return None
    import yaml

    try:
        words = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise MethodError(f"cannot read the caption words {path}: {error}") from None
    if not isinstance(words, dict) or not all(isinstance(value, dict) for value in words.values()):
        raise MethodError(f"{path}: expected 'attribute: {{label: word}}' mappings")
    return words


def build_parser():
    """The `cf-hf train-ba` parser: `HfArgumentParser` over the command's options and
    `BiasAlignmentArguments`."""
    from transformers import HfArgumentParser

    return HfArgumentParser(
        (TrainBiasAlignmentCommandArguments, BiasAlignmentArguments), prog="cf-hf train-ba",
        description="Train the bias-alignment module (CVPR 2025) on a frozen CLIP from FairFace-format labelled "
                    "images, optionally with cf_hf's image counterfactuals; CLIP's embeddings are computed once and "
                    "cached. Writes a checkpoint that `cf-hf evaluate` and `cf-hf compare` read. Resume with "
                    "--resume_from_checkpoint last. List options take space-separated values.")


def run_command(command: TrainBiasAlignmentCommandArguments, args: BiasAlignmentArguments) -> Path:
    """Load the data, embed it (cached), train and save: `cf-hf train-ba` without the parsing."""
    from cf_hf.evaluation.embedding import EmbeddingConfig, EmbeddingEngine
    from cf_hf.evaluation.loaders import load_fairface

    csv = command.fairface_csv or Path(command.fairface) / "fairface_label_train.csv"
    gallery = load_fairface(command.fairface, csv, command.fairface_padding, skip_missing=command.skip_missing,
                            label_values=command.fairface_labels, name="fairface-train")
    words = _caption_words(command.caption_words)
    check_caption_setup(command.attribute, command.caption_template, gallery.attributes, f"the gallery {gallery.name!r}")
    embedding = EmbeddingConfig(device=command.device, batch_size=command.embedding_batch_size,
                                cache_dir=command.cache_dir or str(Path(args.output_dir) / "embeddings"),
                                progress=not command.no_progress)
    engine = EmbeddingEngine.from_pretrained(command.model_name_or_path, embedding)
    data = gallery_data(engine, gallery, command.attribute, command.caption_template, words, seed=args.seed)
    rows = len(data)
    if command.counterfactual_dataset:
        data = BiasAlignmentData.concatenate([data, counterfactual_data(engine, command.counterfactual_dataset)])
    del engine
    record = {"variant": "bias_alignment_image_cf" if command.counterfactual_dataset else "bias_alignment",
              "attributes": list(command.attribute), "template": command.caption_template,
              "gallery": str(csv), "rows": len(data), "labelled_rows": rows,
              "image_counterfactual_rows": data.image_counterfactual_rows,
              "counterfactual_dataset": command.counterfactual_dataset}
    return train_bias_alignment(command.model_name_or_path, data, args, record)


def main(argv: list[str] | None = None) -> int:
    """`cf-hf train-ba`: parse with `HfArgumentParser`, train, print the checkpoint folder."""
    from cf_hf.cli import run_reporting_errors

    def work() -> int:
        command, args = build_parser().parse_args_into_dataclasses(args=argv)
        if command.no_progress:
            from cf_hf.cli import silence_progress_bars

            silence_progress_bars()
            args.disable_tqdm = True
        print(run_command(command, args))
        return 0

    return run_reporting_errors("train-ba", work)
