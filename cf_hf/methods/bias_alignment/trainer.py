"""Training the bias-alignment module (`cf_hf.methods.bias_alignment`) with the HF `Trainer`.

Data: an attribute-labelled face/person set (`cf_hf.evaluation.AttributeGallery`, e.g. FairFace train
through `cf_hf.evaluation.load_fairface`), each image captioned from its labels with a template ("This is
the photo of a {race} {gender} aged {age}.") and, for the chosen attribute(s), an attribute-swapped
counterfactual caption. Optionally, cf_hf's counterfactual dataset (same scene, another person; rows
sharing a `group_id`) adds image counterfactuals, which the paper could not make.

CLIP is frozen, so its embeddings of the training rows are computed once, through the evaluation
harness's `EmbeddingEngine` and its cache (unnormalized, as the heads take them), and the Trainer steps
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
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainingArguments

from cf_hf.methods.bias_alignment.losses import (
    bias_alignment_loss,
    bias_embeddings,
    combined_loss,
    counterfactual_debiasing_loss,
)
from cf_hf.methods.bias_alignment.modeling import BiasAlignedCLIPModel
from cf_hf.methods.linear import MethodError

logger = logging.getLogger(__name__)

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
    from cf_hf.methods.training_utils import resolve_checkpoint

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
