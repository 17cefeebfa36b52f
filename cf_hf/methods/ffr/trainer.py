"""The From Fake to Real schedules on `transformers`' `CLIPForImageClassification`, with `Trainer`.

Schedules (`ClassifierTrainingArguments.schedule`), named as the paper names them (`schedules`):

- `real`: one stage on the real data, with `loss` (ERM or GroupDRO);
- `usb`: one stage on the real data plus synthetic images filling each (class, attribute) group up
  to the largest group (uneven synthetic balancing: the baseline FFR argues against);
- `asb`: one stage on the real data plus the same number of synthetic images in every group, USB's
  total divided by the number of groups;
- `ffr`: stage 1 on that balanced synthetic data only (ERM), then stage 2 on the real data with
  `loss` (From Fake to Real, seed 003).

In `usb` and `asb` the groups of GroupDRO and of group-balanced sampling are (class, attribute,
real-or-generated), as in the authors' mixed baselines; in `real` and stage 2 of `ffr` they are
(class, attribute). Every stage trains `num_train_epochs` epochs (`synthetic_num_train_epochs` for
stage 1) and, given a validation set, keeps the epoch with the best validation worst-group accuracy
(the authors' model selection); stage 2 starts from stage 1's kept epoch. Without a validation set
the last epoch is kept, and the record says so.

The classifier starts from a CLIP checkpoint's image tower (a `CLIPModel` or `CLIPVisionModel`
checkpoint; the classification head is new) and is saved as a plain `CLIPForImageClassification`
whose config records the schedule, the loss, the groups and every stage (`RECORD_KEY`), with a
model card. Stage 1 of `ffr` is saved too (`synthetic_stage_dir`) and reused when a later run asks
for exactly the same stage (same data, validation data, epochs and optimiser settings): runs that
differ only in their stage 2 share it, and an interrupted run resumes after it. The last stage
resumes from a Trainer checkpoint with `resume_from_checkpoint` (a folder, or `last`), GroupDRO's
weights included.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from cf_hf.utils.logging import quiet_trainer

from .encoding import (
    DEFAULT_GROUP_COLUMN,
    DEFAULT_LABEL_COLUMN,
    GROUP_IDS,
    LABELS,
    GroupSpace,
    check_classification_columns,
    check_groups_present,
    check_same_labels,
    encode_dataset,
    group_ids_of,
    value_names,
)
from .groupdro import DEFAULT_STEP_SIZE, GroupDROLoss
from .schedules import (
    ADDED_BALANCED,
    FROM_FAKE_TO_REAL,
    UNEVEN,
    select_synthetic,
    source_group_ids,
    synthetic_counts,
)

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "openai/clip-vit-base-patch32"
SCHEDULES = ("real", UNEVEN, ADDED_BALANCED, FROM_FAKE_TO_REAL)
MIXED_SCHEDULES = (UNEVEN, ADDED_BALANCED)
LOSSES = ("erm", "groupdro")
# The config attribute holding the classifier's training record.
RECORD_KEY = "cf_hf_classification"
SYNTHETIC_STAGE = "synthetic-stage"
# Written into each Trainer checkpoint: GroupDRO's weights are state outside the model.
GROUP_WEIGHTS_FILE = "groupdro_weights.json"
REAL, SYNTHETIC, VALIDATION = "real data", "synthetic data", "validation data"
# The validation metric that picks the kept epoch (the authors' `worst_acc`).
SELECTION_METRIC = "worst_group_accuracy"
# Keys of a stage record that are results, not settings (left out when deciding whether a saved
# stage 1 can be reused).
STAGE_RESULT_KEYS = ("selection",)
SOURCES = ("real", "generated")


@dataclass
class ClassifierTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus the schedule, the loss and the dataset columns. Stages count epochs
    (`num_train_epochs`); `max_steps` is refused."""

    schedule: Literal["real", "usb", "asb", "ffr"] = field(
        default="ffr",
        metadata={"help": "real: the real data only; usb: real + synthetic filling each group up to the largest "
                          "(uneven synthetic balancing); asb: real + USB's total synthetic images, equally many per "
                          "group; ffr: that balanced synthetic data first (stage 1), then the real data (stage 2)."},
    )
    loss: Literal["erm", "groupdro"] = field(
        default="erm",
        metadata={"help": "Loss on the real data (and on usb/asb's mixed data): erm (mean cross-entropy) or "
                          "groupdro (Sagawa et al. 2020; groups (label, group column value), and real-or-generated "
                          "in usb/asb)."},
    )
    groupdro_step_size: float = field(
        default=DEFAULT_STEP_SIZE, metadata={"help": "GroupDRO's step size η for the group weights."}
    )
    synthetic_num_train_epochs: float = field(
        default=-1, metadata={"help": "Epochs of ffr's stage 1 on the synthetic data (-1: num_train_epochs)."}
    )
    label_column: str = field(default=DEFAULT_LABEL_COLUMN, metadata={"help": "Column holding the class."})
    group_column: str = field(
        default=DEFAULT_GROUP_COLUMN,
        metadata={"help": "Column holding the protected attribute; groups are (label, attribute value)."},
    )
    group_balanced_sampling: bool = field(
        default=False,
        metadata={"help": "Draw training examples with replacement so that every group is drawn equally often (the "
                          "authors' resampling baselines; Sagawa et al.'s --reweight_groups)."},
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Kept False: the trainer reads the group ids, which forward does not."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.max_steps > 0:
            raise ValueError(
                f"max_steps={self.max_steps}: the schedules train whole epochs and keep the best epoch on the "
                "validation data; set --num_train_epochs (and --synthetic_num_train_epochs) instead"
            )
        if self.num_train_epochs <= 0:
            raise ValueError(f"num_train_epochs must be > 0, got {self.num_train_epochs}")
        if self.synthetic_num_train_epochs == 0 or self.synthetic_num_train_epochs < -1:
            raise ValueError(f"synthetic_num_train_epochs must be > 0 (or -1: num_train_epochs), got "
                             f"{self.synthetic_num_train_epochs}")

    def stage_epochs(self, stage: str) -> float:
        """Epochs of the synthetic stage of ffr or of any other stage."""
        if stage == SYNTHETIC and self.synthetic_num_train_epochs > 0:
            return self.synthetic_num_train_epochs
        return self.num_train_epochs


class ClassifierTrainer(Trainer):
    """A `Trainer` whose training loss is the mean cross-entropy (ERM) or, with `group_loss`, GroupDRO
    over the batch's `group_ids` column."""

    def __init__(self, *args, group_loss: GroupDROLoss | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.group_loss = group_loss

    def _get_train_sampler(self, train_dataset=None):
        if not self.args.group_balanced_sampling:
            return super()._get_train_sampler(train_dataset)
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        group_ids = np.asarray(dataset.with_format(None)[GROUP_IDS], dtype=np.int64)
        weights = 1.0 / np.bincount(group_ids)[group_ids]
        generator = torch.Generator().manual_seed(self.args.data_seed if self.args.data_seed is not None
                                                  else self.args.seed)
        return torch.utils.data.WeightedRandomSampler(weights, len(weights), replacement=True, generator=generator)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        group_ids = inputs.pop(GROUP_IDS)
        labels = inputs.pop(LABELS)
        outputs = model(**inputs)
        losses = torch.nn.functional.cross_entropy(outputs.logits, labels, reduction="none")
        # Evaluation batches are validation data, whose groups are not the training groups (usb/asb
        # add real-or-generated), and must not move GroupDRO's weights: their loss is the mean.
        if self.group_loss is None or not model.training:
            loss = losses.mean()
        else:
            self.group_loss.to(losses.device)
            loss = self.group_loss(losses, group_ids)
        return (loss, outputs) if return_outputs else loss


class _GroupWeightsCheckpoint(TrainerCallback):
    """Saves GroupDRO's group weights with every Trainer checkpoint, so that a resumed run continues
    with them instead of uniform weights."""

    def __init__(self, group_loss: GroupDROLoss):
        self.group_loss = group_loss

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            (folder / GROUP_WEIGHTS_FILE).write_text(json.dumps(self.group_loss.group_weights.tolist()))


def _restore_group_weights(group_loss: GroupDROLoss, checkpoint: str) -> None:
    path = Path(checkpoint) / GROUP_WEIGHTS_FILE
    if not path.is_file():
        raise ValueError(f"{checkpoint} holds no {GROUP_WEIGHTS_FILE}: it is not a checkpoint of a GroupDRO run")
    weights = torch.tensor(json.loads(path.read_text()), dtype=group_loss.group_weights.dtype)
    if weights.shape != group_loss.group_weights.shape:
        raise ValueError(f"{path} holds {weights.numel()} group weights; this run has {group_loss.num_groups} groups")
    group_loss.group_weights.copy_(weights)


def _stage_record(name: str, dataset, what: str, loss: str, epochs: float, args: ClassifierTrainingArguments,
                  starts_from: str, validation, groups: list[str], group_counts, balanced_sampling: bool,
                  **extra) -> dict:
    """The settings of one stage (everything that changes its result), before it is trained."""
    return {
        "name": name, "starts_from": starts_from, "data": what, "examples": len(dataset),
        "dataset_fingerprint": dataset._fingerprint, **extra, "groups": groups,
        "group_counts": [int(count) for count in group_counts],
        "validation_fingerprint": None if validation is None else validation._fingerprint,
        "loss": loss, "num_train_epochs": epochs, "learning_rate": args.learning_rate,
        "weight_decay": args.weight_decay, "lr_scheduler_type": str(args.lr_scheduler_type),
        "warmup_steps": args.warmup_steps, "optim": str(args.optim),
        "per_device_train_batch_size": args.per_device_train_batch_size, "seed": args.seed,
        "group_balanced_sampling": balanced_sampling,
        **({"groupdro_step_size": args.groupdro_step_size} if loss == "groupdro" else {}),
    }  # fmt: skip


def worst_group_metrics(prediction) -> dict[str, float]:
    """`compute_metrics` for the Trainer: worst-group and balanced accuracy of an `EvalPrediction`
    whose `predictions` are (n, C) logits and `label_ids` the (labels, group_ids) pair."""
    logits, (labels, group_ids) = prediction.predictions, prediction.label_ids
    if isinstance(logits, tuple):
        logits = logits[0]
    correct = np.asarray(logits).argmax(axis=-1) == np.asarray(labels)
    group_ids = np.asarray(group_ids)
    accuracies = [correct[group_ids == group].mean() for group in np.unique(group_ids)]
    return {SELECTION_METRIC: float(np.min(accuracies)), "balanced_accuracy": float(np.mean(accuracies))}


def _train_stage(model, encoded, args: ClassifierTrainingArguments, output_dir: Path, epochs: float,
                 group_loss: GroupDROLoss | None, balanced_sampling: bool, validation=None,
                 resume: bool = False) -> dict:
    """One stage with the Trainer; returns how its epoch was selected.

    With `validation` (an encoded dataset), every epoch is evaluated and saved, and the epoch with
    the best validation worst-group accuracy (the first of equals) is loaded at the end; without it,
    the last epoch is kept. With `resume`, training resumes from `args.resume_from_checkpoint` (a
    folder, or `last` for the latest checkpoint of this stage's Trainer folder)."""
    from transformers.trainer_utils import IntervalStrategy, SaveStrategy

    from cf_hf.methods.training_utils import resolve_checkpoint

    stage_args = copy.copy(args)
    stage_args.output_dir = str(output_dir)
    stage_args.num_train_epochs = epochs
    stage_args.group_balanced_sampling = balanced_sampling
    if validation is not None:
        stage_args.eval_strategy = IntervalStrategy.EPOCH
        stage_args.save_strategy = SaveStrategy.EPOCH
        stage_args.load_best_model_at_end = True
        stage_args.metric_for_best_model = SELECTION_METRIC
        stage_args.greater_is_better = True
        stage_args.save_total_limit = 1  # the Trainer keeps the best checkpoint besides the latest
        stage_args.label_names = [LABELS, GROUP_IDS]
    checkpoint = resolve_checkpoint(args.resume_from_checkpoint, str(output_dir)) if resume else None
    callbacks = [_GroupWeightsCheckpoint(group_loss)] if group_loss is not None else []
    if checkpoint and group_loss is not None:
        _restore_group_weights(group_loss, checkpoint)
    trainer = ClassifierTrainer(
        model=model, args=stage_args, train_dataset=encoded, eval_dataset=validation, group_loss=group_loss,
        callbacks=callbacks, compute_metrics=worst_group_metrics if validation is not None else None,
    )  # fmt: skip
    quiet_trainer(trainer)
    trainer.train(resume_from_checkpoint=checkpoint)
    if validation is None:
        return {"kept": "last epoch", "epochs": epochs}
    history = [(round(entry["epoch"]), entry[f"eval_{SELECTION_METRIC}"]) for entry in trainer.state.log_history
               if f"eval_{SELECTION_METRIC}" in entry]  # fmt: skip
    best_epoch, best = max(history, key=lambda item: (item[1], -item[0]))
    return {"kept": "best validation worst-group accuracy", "epoch": best_epoch,
            "validation_worst_group_accuracy": best,
            "validation_worst_group_accuracy_per_epoch": [value for _, value in history]}  # fmt: skip


def _settings(stage: dict) -> dict:
    return {key: value for key, value in stage.items() if key not in STAGE_RESULT_KEYS}


def _reusable_stage(folder: Path, record: dict, labels: list[str]):
    """The saved stage-1 model in `folder` and its record when its settings equal `record`'s, else
    (None, None)."""
    from transformers import CLIPForImageClassification

    try:
        saved = json.loads((folder / "config.json").read_text(encoding="utf-8")).get(RECORD_KEY, {})
    except (OSError, ValueError):
        return None, None
    stages = saved.get("stages") or []
    if len(stages) != 1 or _settings(stages[0]) != record or saved.get("labels") != labels:
        return None, None
    return CLIPForImageClassification.from_pretrained(str(folder)), stages[0]


def load_classification_dataset(dataset, split: str, what: str):
    """A `datasets.Dataset` from a Dataset, folder or Hub id (`cf_hf.methods.training_utils.load_training_dataset`),
    a load failure named with `what`; None stays None."""
    from cf_hf.methods.training_utils import load_dataset_or_name_the_file

    if dataset is None:
        return None
    try:
        return load_dataset_or_name_the_file(dataset, split)
    except ValueError as error:
        raise ValueError(f"the {what}: {error}") from error


def _with_group_ids(encoded, group_ids: np.ndarray):
    """The encoded dataset with its `group_ids` column replaced by (n,) `group_ids`."""
    return encoded.with_format(None).map(
        lambda batch, indices: {GROUP_IDS: group_ids[indices]}, batched=True, with_indices=True,
        features=encoded.features.copy(), desc="grouping by real-or-generated",
    ).with_format("torch")


def train_classifier(
    model_name_or_path: str,
    real_dataset,
    synthetic_dataset,
    args: ClassifierTrainingArguments,
    real_split: str = "train",
    synthetic_split: str = "train",
    synthetic_stage_dir: str | os.PathLike | None = None,
    validation_dataset=None,
    validation_split: str = "validation",
) -> str:
    """Train a CLIP image classifier with `args.schedule` and `args.loss`; returns the output folder.

    Args:
        model_name_or_path: CLIP checkpoint whose image tower the classifier starts from.
        real_dataset, synthetic_dataset: `datasets.Dataset`s, folders or Hub ids with an `image`, the
            label and the group column; `synthetic_dataset` (a pool with enough images per group) is
            required by `usb`, `asb` and `ffr` and refused by `real`.
        synthetic_stage_dir: where ffr's stage 1 is saved and reused (default: <output_dir>/synthetic-stage).
        validation_dataset: real data with the same columns and every (label, attribute) group,
            biased like the training data as in the authors' code; each stage keeps its epoch with
            the best worst-group accuracy on it. None: each stage keeps its last epoch.
    """
    from transformers import CLIPForImageClassification, CLIPImageProcessor, set_seed

    if args.schedule == "real" and synthetic_dataset is not None:
        raise ValueError("the schedule 'real' trains on the real data only: drop the synthetic dataset")
    if args.schedule != "real" and synthetic_dataset is None:
        raise ValueError(f"the schedule {args.schedule!r} needs a synthetic dataset (--synthetic_dataset)")
    real = load_classification_dataset(real_dataset, real_split, REAL)
    synthetic = load_classification_dataset(synthetic_dataset, synthetic_split, SYNTHETIC)
    validation = load_classification_dataset(validation_dataset, validation_split, VALIDATION)
    check_classification_columns(real, args.label_column, args.group_column, REAL)
    labels = value_names(real, args.label_column, REAL)
    named = [(real, REAL)]
    if synthetic is not None:
        check_classification_columns(synthetic, args.label_column, args.group_column, SYNTHETIC)
        # The synthetic data (stage 1 of ffr) fixes the classes the real data (stage 2) must have.
        check_same_labels(value_names(synthetic, args.label_column, SYNTHETIC), labels, SYNTHETIC, REAL)
        named.append((synthetic, SYNTHETIC))
    if validation is not None:
        check_classification_columns(validation, args.label_column, args.group_column, VALIDATION)
        check_same_labels(labels, value_names(validation, args.label_column, VALIDATION), REAL, VALIDATION)
        named.append((validation, VALIDATION))
    space = GroupSpace.of(labels, named, args.group_column)
    group_names = [space.name(group) for group in range(space.num_groups)]
    real_group_ids = group_ids_of(real, space, args.label_column, args.group_column, REAL)
    if validation is not None:
        check_groups_present(group_ids_of(validation, space, args.label_column, args.group_column, VALIDATION),
                             space, VALIDATION, needed_by="the worst-group accuracy that selects the kept epoch needs every group")
    per_group = None
    if synthetic is not None:
        per_group = synthetic_counts(args.schedule, np.bincount(real_group_ids, minlength=space.num_groups),
                                     group_names)
        chosen = select_synthetic(group_ids_of(synthetic, space, args.label_column, args.group_column, SYNTHETIC),
                                  per_group, group_names, SYNTHETIC)
        synthetic = synthetic.select(chosen)
        synthetic_group_counts = np.bincount(
            group_ids_of(synthetic, space, args.label_column, args.group_column, SYNTHETIC), minlength=space.num_groups)
    if args.loss == "groupdro":
        robust = [(real, REAL)] + ([(synthetic, SYNTHETIC)] if args.schedule in MIXED_SCHEDULES else [])
        group_ids = [group_ids_of(data, space, args.label_column, args.group_column, what) for data, what in robust]
        check_groups_present(np.concatenate(group_ids), space, " + ".join(what for _, what in robust))

    image_processor = CLIPImageProcessor.from_pretrained(model_name_or_path)
    encode = lambda data, what: encode_dataset(  # noqa: E731
        data, image_processor, space, args.label_column, args.group_column, what
    )
    encoded_validation = encode(validation, VALIDATION) if validation is not None else None
    set_seed(args.seed)
    model = CLIPForImageClassification.from_pretrained(
        model_name_or_path, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={label: index for index, label in enumerate(labels)},
    )  # fmt: skip
    output_dir = Path(args.output_dir)
    stages = []
    # (group, count) pairs, not a dict: the saved config sorts dict keys.
    synthetic_extra = {} if per_group is None else {"synthetic_per_group": [[name, count] for name, count in zip(group_names, per_group.tolist())]}
    if args.schedule == FROM_FAKE_TO_REAL:
        epochs = args.stage_epochs(SYNTHETIC)
        record = _stage_record("synthetic", synthetic, SYNTHETIC, "erm", epochs, args, str(model_name_or_path),
                               validation, group_names, synthetic_group_counts, False, **synthetic_extra)
        stage_dir = Path(synthetic_stage_dir) if synthetic_stage_dir else output_dir / SYNTHETIC_STAGE
        reused, saved_record = _reusable_stage(stage_dir, record, labels)
        if reused is not None:
            logger.info("reusing stage 1 (synthetic data) from %s", stage_dir)
            model, record = reused, saved_record
        else:
            # Stage 1 is balanced: ERM, no resampling (nothing to upweight), as the authors train it.
            record["selection"] = _train_stage(model, encode(synthetic, SYNTHETIC), args, stage_dir / "trainer",
                                               epochs, None, False, encoded_validation)
            _save(model, image_processor, stage_dir,
                  _record(args, space, labels, [record], schedule="ffr-stage-1", loss="erm"))
        stages.append(record)
    if args.schedule in MIXED_SCHEDULES:
        import datasets

        encoded = datasets.concatenate_datasets([encode(real, REAL), encode(synthetic, SYNTHETIC)])
        is_synthetic = np.r_[np.zeros(len(real), dtype=bool), np.ones(len(synthetic), dtype=bool)]
        train_group_ids, present = source_group_ids(
            np.asarray(encoded.with_format(None)[GROUP_IDS]), is_synthetic, space.num_groups)
        encoded = _with_group_ids(encoded, train_group_ids)
        training_groups = [f"{group_names[group % space.num_groups]}/{SOURCES[group // space.num_groups]}"
                           for group in present]  # fmt: skip
        record = _stage_record(args.schedule, encoded, f"{REAL} + {SYNTHETIC}", args.loss, args.num_train_epochs,
                               args, str(model_name_or_path), validation, training_groups,
                               np.bincount(train_group_ids, minlength=len(training_groups)),
                               args.group_balanced_sampling, **synthetic_extra)
        record["dataset_fingerprint"] = f"{real._fingerprint}+{synthetic._fingerprint}"
        num_training_groups = len(training_groups)
    else:
        encoded = encode(real, REAL)
        starts_from = "the synthetic stage" if args.schedule == FROM_FAKE_TO_REAL else str(model_name_or_path)
        record = _stage_record("real", real, REAL, args.loss, args.num_train_epochs, args, starts_from, validation,
                               group_names, np.bincount(real_group_ids, minlength=space.num_groups),
                               args.group_balanced_sampling)
        num_training_groups = space.num_groups
    group_loss = GroupDROLoss(num_training_groups, args.groupdro_step_size) if args.loss == "groupdro" else None
    record["selection"] = _train_stage(model, encoded, args, output_dir / "trainer", args.num_train_epochs,
                                       group_loss, args.group_balanced_sampling, encoded_validation, resume=True)
    stages.append(record)
    extra = {"group_weights": group_loss.group_weights.tolist()} if group_loss is not None else {}
    _save(model, image_processor, output_dir, _record(args, space, labels, stages, **extra))
    return str(output_dir)


def _record(args: ClassifierTrainingArguments, space: GroupSpace, labels: list[str], stages: list[dict],
            schedule: str | None = None, loss: str | None = None, **extra) -> dict:
    return {
        "schedule": schedule or args.schedule, "loss": loss or args.loss, "base_model": stages[0]["starts_from"],
        "label_column": args.label_column,
        "group_column": args.group_column, "labels": labels, "group_values": list(space.values),
        "stages": stages, **extra,
    }  # fmt: skip


def _save(model, image_processor, folder: Path, record: dict) -> None:
    from .card import write_model_card

    setattr(model.config, RECORD_KEY, record)
    model.save_pretrained(str(folder))
    image_processor.save_pretrained(str(folder))
    write_model_card(folder, record)


def training_record(model_or_config) -> dict | None:
    """The classifier's training record (schedule, loss, groups, stages), or None."""
    config = getattr(model_or_config, "config", model_or_config)
    return getattr(config, RECORD_KEY, None)
