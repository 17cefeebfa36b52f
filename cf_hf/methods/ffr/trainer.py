"""The From Fake to Real schedules on `transformers`' `CLIPForImageClassification`, with `Trainer`.

Schedules (`ClassifierTrainingArguments.schedule`):

- `real`: one stage on the real data, with `loss` (ERM or GroupDRO);
- `mixed`: one stage on the real and the synthetic data together (the prior practice);
- `ffr`: stage 1 on the balanced synthetic data only (ERM: it is balanced, so there is no worst
  group to upweight), then stage 2 on the real data with `loss` (From Fake to Real, seed 003).

The classifier starts from a CLIP checkpoint's image tower (a `CLIPModel` or `CLIPVisionModel`
checkpoint; the classification head is new) and is saved as a plain `CLIPForImageClassification`
whose config records the schedule, the loss, the groups and every stage (`RECORD_KEY`), with a
model card. Stage 1 of `ffr` is saved too (`synthetic_stage_dir`) and reused when a later run asks
for exactly the same stage (same data, steps and optimiser settings): runs that differ only in
their stage 2 share it, and an interrupted run resumes after it. The last stage resumes from a
Trainer checkpoint with `resume_from_checkpoint` (a folder, or `last`), GroupDRO's weights
included.
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

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "openai/clip-vit-base-patch32"
SCHEDULES = ("real", "mixed", "ffr")
LOSSES = ("erm", "groupdro")
# The config attribute holding the classifier's training record.
RECORD_KEY = "cf_hf_classification"
SYNTHETIC_STAGE = "synthetic-stage"
# Written into each Trainer checkpoint: GroupDRO's weights are state outside the model.
GROUP_WEIGHTS_FILE = "groupdro_weights.json"
REAL, SYNTHETIC = "real data", "synthetic data"


@dataclass
class ClassifierTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus the schedule, the loss and the dataset columns."""

    schedule: Literal["real", "mixed", "ffr"] = field(
        default="ffr",
        metadata={"help": "real: the real data only; mixed: real + synthetic in one stage; ffr: the synthetic "
                          "data first (stage 1), then the real data (stage 2)."},
    )
    loss: Literal["erm", "groupdro"] = field(
        default="erm",
        metadata={"help": "Loss on the real data (and on the mixed data): erm (mean cross-entropy) or groupdro "
                          "(Sagawa et al. 2020, over (label, group column value) groups)."},
    )
    groupdro_step_size: float = field(
        default=DEFAULT_STEP_SIZE, metadata={"help": "GroupDRO's step size η for the group weights."}
    )
    synthetic_max_steps: int = field(
        default=-1, metadata={"help": "Steps of ffr's stage 1 on the synthetic data (-1: max_steps)."}
    )
    label_column: str = field(default=DEFAULT_LABEL_COLUMN, metadata={"help": "Column holding the class."})
    group_column: str = field(
        default=DEFAULT_GROUP_COLUMN,
        metadata={"help": "Column holding the protected attribute; groups are (label, attribute value)."},
    )
    group_balanced_sampling: bool = field(
        default=False,
        metadata={"help": "Draw training examples with replacement so that every (label, group) group is drawn "
                          "equally often (Sagawa et al. train GroupDRO with such batches, --reweight_groups)."},
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
        if self.max_steps <= 0:
            raise ValueError(f"set max_steps (> 0): the schedules count steps per stage, got {self.max_steps}")

    def stage_steps(self, stage: str) -> int:
        """Steps of the synthetic stage of ffr or of any other stage."""
        if stage == SYNTHETIC and self.synthetic_max_steps > 0:
            return self.synthetic_max_steps
        return self.max_steps


class ClassifierTrainer(Trainer):
    """A `Trainer` whose loss is the mean cross-entropy (ERM) or, with `group_loss`, GroupDRO over the
    batch's `group_ids` column."""

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
        if self.group_loss is None:
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


def _stage_record(name: str, dataset, what: str, loss: str, steps: int, args: ClassifierTrainingArguments,
                  starts_from: str) -> dict:
    return {
        "name": name, "starts_from": starts_from, "data": what, "examples": len(dataset),
        "dataset_fingerprint": dataset._fingerprint,
        "loss": loss, "max_steps": steps, "learning_rate": args.learning_rate,
        "per_device_train_batch_size": args.per_device_train_batch_size, "seed": args.seed,
        "group_balanced_sampling": args.group_balanced_sampling and name != "synthetic",
        **({"groupdro_step_size": args.groupdro_step_size} if loss == "groupdro" else {}),
    }  # fmt: skip


def _train_stage(model, encoded, args: ClassifierTrainingArguments, output_dir: Path, steps: int,
                 group_loss: GroupDROLoss | None, balanced_sampling: bool = True, resume: bool = False) -> None:
    """One stage with the Trainer; with `resume`, from `args.resume_from_checkpoint` (a folder, or
    `last` for the latest checkpoint of this stage's Trainer folder)."""
    from cf_hf.methods.training_utils import resolve_checkpoint

    stage_args = copy.copy(args)
    stage_args.output_dir = str(output_dir)
    stage_args.max_steps = steps
    stage_args.group_balanced_sampling = args.group_balanced_sampling and balanced_sampling
    checkpoint = resolve_checkpoint(args.resume_from_checkpoint, str(output_dir)) if resume else None
    callbacks = [_GroupWeightsCheckpoint(group_loss)] if group_loss is not None else []
    if checkpoint and group_loss is not None:
        _restore_group_weights(group_loss, checkpoint)
    trainer = ClassifierTrainer(model=model, args=stage_args, train_dataset=encoded, group_loss=group_loss,
                                callbacks=callbacks)
    trainer.train(resume_from_checkpoint=checkpoint)


def _reusable_stage(folder: Path, record: dict, labels: list[str]):
    """The saved stage-1 model in `folder` when its record equals `record`, else None."""
    from transformers import CLIPForImageClassification

    try:
        saved = json.loads((folder / "config.json").read_text(encoding="utf-8")).get(RECORD_KEY, {})
    except (OSError, ValueError):
        return None
    if saved.get("stages") != [record] or saved.get("labels") != labels:
        return None
    return CLIPForImageClassification.from_pretrained(str(folder))


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


def train_classifier(
    model_name_or_path: str,
    real_dataset,
    synthetic_dataset,
    args: ClassifierTrainingArguments,
    real_split: str = "train",
    synthetic_split: str = "train",
    synthetic_stage_dir: str | os.PathLike | None = None,
) -> str:
    """Train a CLIP image classifier with `args.schedule` and `args.loss`; returns the output folder.

    Args:
        model_name_or_path: CLIP checkpoint whose image tower the classifier starts from.
        real_dataset, synthetic_dataset: `datasets.Dataset`s, folders or Hub ids with an `image`, the
            label and the group column; `synthetic_dataset` is required by `mixed` and `ffr` and
            refused by `real`.
        synthetic_stage_dir: where ffr's stage 1 is saved and reused (default: <output_dir>/synthetic-stage).
    """
    from transformers import CLIPForImageClassification, CLIPImageProcessor, set_seed

    if args.schedule == "real" and synthetic_dataset is not None:
        raise ValueError("the schedule 'real' trains on the real data only: drop the synthetic dataset")
    if args.schedule != "real" and synthetic_dataset is None:
        raise ValueError(f"the schedule {args.schedule!r} needs a synthetic dataset (--synthetic_dataset)")
    real = load_classification_dataset(real_dataset, real_split, REAL)
    synthetic = load_classification_dataset(synthetic_dataset, synthetic_split, SYNTHETIC)
    check_classification_columns(real, args.label_column, args.group_column, REAL)
    labels = value_names(real, args.label_column, REAL)
    named = [(real, REAL)]
    if synthetic is not None:
        check_classification_columns(synthetic, args.label_column, args.group_column, SYNTHETIC)
        # The synthetic data (stage 1 of ffr) fixes the classes the real data (stage 2) must have.
        check_same_labels(value_names(synthetic, args.label_column, SYNTHETIC), labels, SYNTHETIC, REAL)
        named.append((synthetic, SYNTHETIC))
    space = GroupSpace.of(labels, named, args.group_column)
    if args.loss == "groupdro":
        robust = [(real, REAL)] + ([(synthetic, SYNTHETIC)] if args.schedule == "mixed" else [])
        group_ids = [group_ids_of(data, space, args.label_column, args.group_column, what) for data, what in robust]
        check_groups_present(np.concatenate(group_ids), space, " + ".join(what for _, what in robust))

    image_processor = CLIPImageProcessor.from_pretrained(model_name_or_path)
    encode = lambda data, what: encode_dataset(  # noqa: E731
        data, image_processor, space, args.label_column, args.group_column, what
    )
    set_seed(args.seed)
    model = CLIPForImageClassification.from_pretrained(
        model_name_or_path, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={label: index for index, label in enumerate(labels)},
    )  # fmt: skip
    output_dir = Path(args.output_dir)
    group_loss = GroupDROLoss(space.num_groups, args.groupdro_step_size) if args.loss == "groupdro" else None
    stages = []
    if args.schedule == "ffr":
        steps = args.stage_steps(SYNTHETIC)
        record = _stage_record("synthetic", synthetic, SYNTHETIC, "erm", steps, args, str(model_name_or_path))
        stage_dir = Path(synthetic_stage_dir) if synthetic_stage_dir else output_dir / SYNTHETIC_STAGE
        reused = _reusable_stage(stage_dir, record, labels)
        if reused is not None:
            logger.info("reusing stage 1 (synthetic data) from %s", stage_dir)
            model = reused
        else:
            _train_stage(model, encode(synthetic, SYNTHETIC), args, stage_dir / "trainer", steps, None,
                         balanced_sampling=False)
            _save(model, image_processor, stage_dir,
                  _record(args, space, labels, [record], schedule="ffr-stage-1", loss="erm"))
        stages.append(record)
    if args.schedule == "mixed":
        import datasets

        encoded = datasets.concatenate_datasets([encode(real, REAL), encode(synthetic, SYNTHETIC)])
        record = _stage_record("mixed", encoded, f"{REAL} + {SYNTHETIC}", args.loss, args.max_steps, args,
                               str(model_name_or_path))
        record["dataset_fingerprint"] = f"{real._fingerprint}+{synthetic._fingerprint}"
        _train_stage(model, encoded, args, output_dir / "trainer", args.max_steps, group_loss, resume=True)
    else:
        starts_from = "the synthetic stage" if args.schedule == "ffr" else str(model_name_or_path)
        record = _stage_record("real", real, REAL, args.loss, args.max_steps, args, starts_from)
        _train_stage(model, encode(real, REAL), args, output_dir / "trainer", args.max_steps, group_loss,
                     resume=True)
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
