"""Training the bias-alignment module (`cf_hf.methods.bias_alignment`) with the HF `Trainer`.

Data: an attribute-labelled face/person set (`cf_hf.evaluation.AttributeGallery`, e.g. FairFace train
through `cf_hf.evaluation.load_fairface`), each image captioned from its labels (the authors' caption for
the attribute removed, `captions.yaml`, e.g. "This is the photo of a {race} {gender} aged {age}.") and,
for the chosen attribute(s), an attribute-swapped counterfactual caption drawn again at every epoch.
Optionally, cf_hf's counterfactual dataset (same scene, another person; rows
sharing a `group_id`) adds image counterfactuals, which the paper could not make.

CLIP is frozen, so its embeddings of the training rows are computed once, through the evaluation
harness's `EmbeddingEngine` and its cache (unnormalized, as the heads take them), and the Trainer steps
over embeddings only (`BiasAlignmentData`). `EncodedBiasAlignmentData` feeds images and captions
instead (CLIP re-encodes them every step): the benchmark's baseline, same losses.

One step (`BiasAlignmentTrainer.compute_loss`), as in the authors' code: with probability
`counterfactual_probability`, drawn once per batch (per row as an option), the captions L_cd shows are
the counterfactual ones (and, with image counterfactuals, the images another member of their group);
L_ba and L_cd are scored against [batch; FIFO queue] of original unit-norm embeddings, the queues
starting full of random unit vectors; with `use_momentum`, an EMA copy of the heads, fed the original
image and first caption, gives L_cd targets mixed in with `momentum_ratio` once `momentum_warmup_epochs`
have passed; `L = α L_cd + (1 − α) L_ba`; τ stays fixed unless `learn_temperature`.

The schedule is the authors': Adam at a constant learning rate, no gradient clipping, up to 100 epochs,
ABLE on held-out data (`BiasAlignmentValidation`) every `eval_every_epochs`, the best-ABLE heads kept and
training stopped after `early_stopping_patience` evaluations without a better one.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments

from cf_hf.methods.bias_alignment.losses import (
    bias_alignment_loss,
    bias_embeddings,
    combined_loss,
    counterfactual_debiasing_loss,
)
from cf_hf.methods.bias_alignment.modeling import BiasAlignedCLIPModel
from cf_hf.methods.bias_alignment.validation import BiasAlignmentValidation
from cf_hf.methods.linear import MethodError
from cf_hf.utils.logging import quiet_trainer

logger = logging.getLogger(__name__)

# The authors' settings (docs/method.md §6): α, queue size, momentum, momentum ratio and warm-up.
DEFAULT_ALPHA = 0.3
DEFAULT_QUEUE_SIZE = 65536
DEFAULT_MOMENTUM = 0.995
DEFAULT_MOMENTUM_RATIO = 0.4
DEFAULT_MOMENTUM_WARMUP_EPOCHS = 5.0
COUNTERFACTUAL_PROBABILITY = 0.5
# The authors' schedule: epochs at most, evaluation every 2 epochs, stop after 10 evaluations without a
# better ABLE.
DEFAULT_EPOCHS = 100.0
DEFAULT_EVAL_EVERY_EPOCHS = 2
DEFAULT_EARLY_STOPPING_PATIENCE = 10
# How the counterfactual caption replaces the first one in L_cd: one draw for the whole batch (the
# authors') or one per row; how the queues start: full of random unit vectors (the authors') or empty.
SWAP_CHOICES = ("batch", "row")
QUEUE_START_CHOICES = ("random", "empty")


@dataclass
class BiasAlignmentArguments(TrainingArguments):
    """`TrainingArguments` plus the BA losses' settings. Defaults that differ from the Trainer's are the
    authors' (`haoyusimon/VL_Debiasing`, train.py): Adam over the two heads at a constant lr 5e-6, no
    gradient clipping, batch 512, up to 100 epochs, ABLE evaluated every 2 epochs, the best kept, early
    stop after 10 evaluations without improvement. Without evaluation (`eval_strategy no`) set
    `early_stopping_patience 0`: the last heads are kept."""

    alpha: float = field(default=DEFAULT_ALPHA, metadata={"help": "weight of L_cd in L = α L_cd + (1 − α) L_ba, in [0, 1]"})
    queue_size: int = field(default=DEFAULT_QUEUE_SIZE,
                            metadata={"help": "length of the FIFO queues of original embeddings; at least the batch size"})
    queue_start: str = field(default="random", metadata={
        "help": "how the queues start: 'random' (full of random unit vectors, the authors') or 'empty' (filled as "
                "batches arrive)", "choices": list(QUEUE_START_CHOICES)})
    counterfactual_probability: float = field(
        default=COUNTERFACTUAL_PROBABILITY,
        metadata={"help": "probability that the captions (and, with image counterfactuals, the images) L_cd shows "
                          "are the counterfactual ones"})
    counterfactual_swap: str = field(default="batch", metadata={
        "help": "'batch': one draw decides for the whole batch (the authors'); 'row': one draw per row",
        "choices": list(SWAP_CHOICES)})
    learn_temperature: bool = field(default=False, metadata={
        "help": "train τ with the heads (clamped to [0.001, 0.5]); the authors keep it at 0.07"})
    use_momentum: bool = field(default=True, metadata={"help": "mix momentum-teacher targets into L_cd"})
    momentum: float = field(default=DEFAULT_MOMENTUM, metadata={"help": "EMA factor of the momentum heads"})
    momentum_ratio: float = field(default=DEFAULT_MOMENTUM_RATIO,
                                  metadata={"help": "share of the momentum heads' distribution in the L_cd targets"})
    momentum_warmup_epochs: float = field(default=DEFAULT_MOMENTUM_WARMUP_EPOCHS,
                                          metadata={"help": "epochs before the momentum targets are mixed in"})
    image_head_size: int | None = field(default=None, metadata={
        "help": "hidden width of the image head; unset: d (the authors' 512 on 512-d ViT-B)"})
    shared_head_size: int | None = field(default=None, metadata={
        "help": "hidden width of the shared head; unset: 2d (the authors' 1024 on 512-d ViT-B)"})
    eval_every_epochs: int = field(default=DEFAULT_EVAL_EVERY_EPOCHS, metadata={
        "help": "with eval_strategy epoch: score ABLE on the held-out rows every this many epochs"})
    early_stopping_patience: int = field(default=DEFAULT_EARLY_STOPPING_PATIENCE, metadata={
        "help": "stop after this many evaluations without a better ABLE; 0: never stop early"})
    learning_rate: float = field(default=5e-6, metadata={"help": "Adam learning rate (the authors')"})
    lr_scheduler_type: str = field(default="constant", metadata={"help": "constant, as the authors"})
    max_grad_norm: float = field(default=0.0, metadata={"help": "0: no gradient clipping, as the authors"})
    num_train_epochs: float = field(default=DEFAULT_EPOCHS, metadata={"help": "the authors' upper bound"})
    per_device_train_batch_size: int = field(default=512, metadata={"help": "batch size (the authors')"})
    weight_decay: float = field(default=0.0, metadata={"help": "0: Adam, as the authors"})
    eval_strategy: str = field(default="epoch", metadata={
        "help": "'epoch': ABLE every eval_every_epochs on held-out rows (the authors'); 'no': none"})
    save_strategy: str = field(default="best", metadata={"help": "'best': a checkpoint whenever ABLE improves"})
    metric_for_best_model: str | None = field(default="able", metadata={"help": "ABLE on the held-out rows"})
    greater_is_better: bool | None = field(default=True, metadata={"help": "ABLE: higher is better"})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "keep the best-ABLE heads"})
    save_total_limit: int | None = field(default=2, metadata={"help": "checkpoints kept"})
    remove_unused_columns: bool = field(default=False, metadata={"help": "the rows are embeddings, kept whole"})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "a checkpoint folder, or 'last' for the latest in output_dir"})

    def __post_init__(self):
        for name, choices in (("queue_start", QUEUE_START_CHOICES), ("counterfactual_swap", SWAP_CHOICES)):
            if getattr(self, name) not in choices:
                raise MethodError(f"{name}={getattr(self, name)!r}: choose from {list(choices)}")
        eval_strategy = getattr(self.eval_strategy, "value", self.eval_strategy)
        if eval_strategy not in ("epoch", "no"):
            raise MethodError(f"eval_strategy={self.eval_strategy!r}: the bias-alignment module evaluates at epoch ends "
                              "('epoch', every eval_every_epochs) or not at all ('no')")
        if self.eval_every_epochs < 1:
            raise MethodError(f"eval_every_epochs={self.eval_every_epochs} must be at least 1")
        if self.early_stopping_patience < 0:
            raise MethodError(f"early_stopping_patience={self.early_stopping_patience} must be 0 (off) or more")
        if self.early_stopping_patience and eval_strategy == "no":
            raise MethodError(f"early_stopping_patience={self.early_stopping_patience} counts evaluations, but "
                              "eval_strategy is 'no': set early_stopping_patience 0, or evaluate (eval_strategy epoch)")
        super().__post_init__()
        if not 0.0 <= self.alpha <= 1.0:
            raise MethodError(f"alpha={self.alpha} is outside [0, 1]: L = α L_cd + (1 − α) L_ba")
        if self.queue_size < self.per_device_train_batch_size:
            raise MethodError(f"queue_size={self.queue_size} is smaller than a batch "
                              f"({self.per_device_train_batch_size}): the queue must hold at least one batch")
        for name in ("counterfactual_probability", "momentum", "momentum_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise MethodError(f"{name}={getattr(self, name)} is outside [0, 1]")

    @property
    def evaluates(self) -> bool:
        """Whether training scores ABLE on held-out rows (and keeps the best heads)."""
        return self.eval_strategy != "no"

    def loss_settings(self) -> dict:
        """The settings the checkpoint's config records."""
        return {name: getattr(self, name) for name in (
            "alpha", "queue_size", "queue_start", "counterfactual_probability", "counterfactual_swap",
            "learn_temperature", "use_momentum", "momentum", "momentum_ratio", "momentum_warmup_epochs",
            "learning_rate", "lr_scheduler_type", "max_grad_norm", "per_device_train_batch_size", "num_train_epochs",
            "max_steps", "eval_strategy", "eval_every_epochs", "early_stopping_patience", "seed")}


# ---------------------------------------------------------------------------------------------
# The Trainer


class FeatureQueue:
    """A FIFO queue of unit-norm embeddings (MoCo-style), (size, d).

    `start="random"` (the authors'): full from the first step with random unit vectors (drawn from
    torch's generator, which the Trainer seeds), replaced batch by batch; `start="empty"`: filled as
    batches arrive, only what was queued so far scored.
    """

    def __init__(self, size: int, dimension: int, device, dtype, start: str = "random"):
        if start == "random":
            self.embeddings = F.normalize(torch.randn(size, dimension), dim=-1).to(device=device, dtype=dtype)
            self.filled = size
        else:
            self.embeddings = torch.zeros(size, dimension, device=device, dtype=dtype)
            self.filled = 0
        self.pointer = 0

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


class EvaluateEveryEpochsCallback(TrainerCallback):
    """With `eval_strategy epoch`, evaluate (and so save a better checkpoint) only every
    `eval_every_epochs` epochs, as the authors do (after epochs 2, 4, ...)."""

    def on_epoch_end(self, args, state, control, **kwargs):
        if args.evaluates:
            control.should_evaluate = round(state.epoch or 0) % args.eval_every_epochs == 0
        return control


class DrawEpochCallback(TrainerCallback):
    """Tells the training rows which epoch starts, so that each epoch redraws every row's counterfactual
    caption (and image partner) from (seed, epoch): the authors redraw at every fetch."""

    def __init__(self, data):
        self.data = data

    def on_epoch_begin(self, args, state, control, **kwargs):
        # state.epoch is the epochs done so far (a fraction after a resume mid-epoch): its floor is this epoch.
        self.data.set_epoch(math.floor(state.epoch or 0))
        return control


def counterfactual_mask(rows: int, probability: float, swap: str, device) -> torch.Tensor:
    """(rows,) bool: which rows show their counterfactual. `swap="batch"`: one draw for all rows (the
    authors' `random.random() < 0.5` per batch); `"row"`: one draw per row."""
    draws = torch.rand(1 if swap == "batch" else rows, device=device) < probability
    return draws.expand(rows)


class BiasAlignmentTrainer(Trainer):
    """A `Trainer` whose loss is the BA module's: the queues and the momentum heads live here, not in
    the checkpoint (after a resume the queues start again). `evaluate` scores ABLE on `validation`
    (`BiasAlignmentValidation`, passed as `eval_dataset`) with the current heads."""

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

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """ABLE (with its MaxSkew and zero-shot accuracy) of the current heads on the held-out rows."""
        validation = eval_dataset if eval_dataset is not None else self.eval_dataset
        if not isinstance(validation, BiasAlignmentValidation):
            raise MethodError("evaluation needs held-out rows (BiasAlignmentValidation), got "
                              f"{type(validation).__name__}")
        heads = self.accelerator.unwrap_model(self.model).bias_alignment
        metrics = {f"{metric_key_prefix}_{name}": value for name, value in validation.score(heads).items()}
        metrics["epoch"] = self.state.epoch
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

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
            self.queues = {tower: FeatureQueue(args.queue_size, image.shape[1], image.device, image.dtype,
                                               args.queue_start)
                           for tower in ("image", "text")}
        swap_text = counterfactual_mask(rows, args.counterfactual_probability, args.counterfactual_swap, text.device)
        shown_text = torch.where(swap_text[:, None], counterfactual_text, text)
        swap_image = counterfactual_mask(rows, args.counterfactual_probability, args.counterfactual_swap, image.device)
        swap_image = swap_image & inputs["has_image_counterfactual"].to(image.device).bool()
        shown_image = torch.where(swap_image[:, None], counterfactual_image, image)

        original_image, original_text = F.normalize(image, dim=-1), F.normalize(text, dim=-1)
        image_keys, text_keys = self.queues["image"].keys(original_image), self.queues["text"].keys(original_text)
        temperature = heads.loss_temperature()
        loss_ba = bias_alignment_loss(bias_embeddings(image, heads.debias_image(image)),
                                      bias_embeddings(text, heads.debias_text(text)), image_keys, text_keys, temperature)
        image_targets = text_targets = None
        if args.use_momentum:
            self._update_momentum(heads)
            if (self.state.epoch or 0.0) >= args.momentum_warmup_epochs:
                # The teacher sees what the targets describe, the row's own image and first caption (the
                # authors'), never the swapped inputs.
                with torch.no_grad():
                    tau = temperature.detach()
                    ratio = args.momentum_ratio
                    momentum_image = F.normalize(self.momentum_heads.debias_image(image), dim=-1)
                    momentum_text = F.normalize(self.momentum_heads.debias_text(text), dim=-1)
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
    model = BiasAlignedCLIPModel.from_clip(clip, image_head_size=args.image_head_size,
                                           shared_head_size=args.shared_head_size)
    model.freeze_clip(learn_temperature=args.learn_temperature)
    return model, processor


def train_bias_alignment(original: str | Path, data: torch.utils.data.Dataset, args: BiasAlignmentArguments,
                         record: dict | None = None, validation: BiasAlignmentValidation | None = None) -> Path:
    """Train the BA heads on `data` (`BiasAlignmentData`, or `EncodedBiasAlignmentData`) and save the
    bias-aligned checkpoint (whole CLIP + heads, safetensors, processor) in `args.output_dir`.

    With `args.eval_strategy epoch`, `validation` (held-out rows, `BiasAlignmentValidation`) is scored
    every `args.eval_every_epochs`; the best-ABLE heads are saved, and training stops after
    `args.early_stopping_patience` evaluations without a better ABLE. `args.resume_from_checkpoint`
    ('last' or a folder) resumes an interrupted run; `record` (what the data was) is written into the
    config with the loss settings.
    """
    from cf_hf.methods.training_utils import resolve_checkpoint

    if len(data) == 0:
        raise MethodError("no training rows")
    if args.queue_size < min(args.per_device_train_batch_size, len(data)):
        raise MethodError(f"queue_size={args.queue_size} is smaller than a batch")
    if args.evaluates and validation is None:
        raise MethodError("eval_strategy='epoch' keeps the best-ABLE heads, which needs held-out rows: give "
                          "validation data (cf-hf train-ba: --validation_fraction and --validation_imagenet), or "
                          "train without evaluation: --eval_strategy no --early_stopping_patience 0")
    resume = resolve_checkpoint(args.resume_from_checkpoint, args.output_dir)
    model, processor = bias_aligned_from(original, args)
    collator = getattr(data, "collate", None)
    callbacks = [EvaluateEveryEpochsCallback()]
    if hasattr(data, "set_epoch"):
        callbacks.append(DrawEpochCallback(data))
    if args.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience))
    trainer = BiasAlignmentTrainer(model=model, args=args, train_dataset=data, data_collator=collator,
                                   eval_dataset=validation if args.evaluates else None, callbacks=callbacks)
    quiet_trainer(trainer)
    trainer.train(resume_from_checkpoint=resume)
    if trainer.state.best_metric is not None:
        record = {**(record or {}), "best_able": trainer.state.best_metric,
                  "best_step": trainer.state.best_global_step, "steps": trainer.state.global_step}
    final = trainer.accelerator.unwrap_model(trainer.model)
    final.config.bias_alignment = json.loads(json.dumps(
        {"losses": args.loss_settings(), "original": str(original), **(record or {})}, default=str))
    final.save_pretrained(args.output_dir)
    processor.save_pretrained(args.output_dir)
    return Path(args.output_dir)
