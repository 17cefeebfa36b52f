"""Counterfactual fine-tuning of CLIP with the Hugging Face `Trainer` (docs/method.md §2).

- `CounterfactualTrainingArguments`: `TrainingArguments` plus the loss weights, the group sampling,
  tower freezing and LoRA options.
- `CounterfactualTrainer`: a `Trainer` whose training batches come from `GroupBatchSampler` (whole
  groups per process, also under `accelerate launch` with several processes).
- `train(...)`: model + processor + dataset in, merged standard CLIP checkpoint out.
- `main(argv)`: the `cf-hf train` command.

Example::

    cf-hf train --dataset path/to/counterfactuals --output_dir outputs/cf-clip \\
        --per_device_train_batch_size 64 --group_size 4 --beta_cf 1.0 --num_train_epochs 1
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from cf_hf.methods.counterfactual.losses import DEFAULT_BETA_CF, DEFAULT_BETA_CLIP, DEFAULT_CF_TEMPERATURE
from cf_hf.methods.counterfactual.sampler import (
    CAPTION_COLUMN,
    GROUP_ID_COLUMN,
    IMAGE_COLUMN,
    PIXEL_VALUES_KEY,
    SMALL_GROUP_POLICIES,
    CounterfactualCollator,
    GroupBatchSampler,
    check_captions,
    check_columns,
    check_group_ids,
    group_index,
)
from cf_hf.utils.logging import quiet_trainer

if TYPE_CHECKING:
    import datasets

    from cf_hf.methods.counterfactual.modeling import CounterfactualCLIPModel

from cf_hf.methods.training_utils import LATEST_CHECKPOINT_WORDS, interrupts_held

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "openai/clip-vit-base-patch32"
# The attention projections of both CLIP towers.
DEFAULT_LORA_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "out_proj")
# `--resume_from_checkpoint` values meaning "the latest checkpoint in output_dir" (case-insensitive).
VISION_TOWER = ("vision_model", "visual_projection")
TEXT_TOWER = ("text_model", "text_projection")


@dataclass
class CounterfactualTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus the options of counterfactual fine-tuning.

    `per_device_train_batch_size` must be a multiple of `group_size`: each batch of each process holds
    `per_device_train_batch_size / group_size` groups of `group_size` images.
    """

    # Redeclared: training without an output folder is refused rather than writing to ./trainer_output.
    output_dir: str | None = field(
        default=None, metadata={"help": "Where the checkpoints and the final model are written (required)."}
    )
    beta_clip: float = field(default=DEFAULT_BETA_CLIP, metadata={"help": "Weight of the CLIP loss (>= 0)."})
    beta_cf: float = field(
        default=DEFAULT_BETA_CF, metadata={"help": "Weight of the counterfactual loss (>= 0)."}
    )
    cf_temperature: float = field(
        default=DEFAULT_CF_TEMPERATURE, metadata={"help": "Temperature of the counterfactual loss (> 0)."}
    )
    clip_group_positives: bool = field(
        default=True,
        metadata={"help": "Same-group image-caption pairs are positives of the CLIP loss too."},
    )
    group_size: int = field(
        default=4, metadata={"help": "Images per group in a batch (K >= 2); divides the batch size."}
    )
    small_groups: str = field(
        default="replace",
        metadata={
            "help": "Groups with fewer than group_size images: 'replace' (top up with replacement) "
            "or 'drop'.",
            "choices": list(SMALL_GROUP_POLICIES),
        },
    )
    caption_suffix_columns: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Columns whose values follow the caption in the text the model sees, space-separated "
            "(e.g. --caption_suffix_columns decorator_framing decorator_lighting decorator_camera: captions "
            "that name what the image shows keep the text tower's words for it)."
        },
    )
    freeze_vision: bool = field(default=False, metadata={"help": "Freeze the vision tower."})
    freeze_text: bool = field(default=False, metadata={"help": "Freeze the text tower."})
    lora_r: int = field(default=0, metadata={"help": "LoRA rank; 0 trains the full model."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha (scaling = alpha / r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA inputs."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(DEFAULT_LORA_TARGET_MODULES),
        metadata={
            "help": "Module names (suffixes) that get LoRA adapters, in both unfrozen towers; space-separated."
        },
    )
    pixel_cache_mb: float = field(
        default=1024,
        metadata={
            "help": "Keep up to this many MiB of processed training images in memory (in each data-loading "
            "process): epochs after the first skip decoding and processing them. 0 turns it off."
        },
    )
    # Redeclared for its help: `train` resolves 'last' / 'True' to the latest checkpoint.
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={
            "help": "Resume from this checkpoint folder, or from the latest checkpoint-* in output_dir with "
            f"{' / '.join(repr(word) for word in LATEST_CHECKPOINT_WORDS)}."
        },
    )
    # The collator needs the `image`, `caption` and `group_id` columns that `forward` does not name.
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep False: the collator reads image/caption/group_id."}
    )

    def __post_init__(self):
        if self.output_dir is None:
            # TrainingArguments would write to ./trainer_output; a run's results must go where asked.
            raise ValueError("output_dir is required (--output_dir): the folder the checkpoints and model go to")
        super().__post_init__()
        if self.beta_clip < 0 or self.beta_cf < 0:
            raise ValueError(
                f"beta_clip and beta_cf must be >= 0, got beta_clip={self.beta_clip}, beta_cf={self.beta_cf}"
            )
        if self.beta_clip == 0 and self.beta_cf == 0:
            raise ValueError("beta_clip and beta_cf are both 0: there is no loss to train on")
        if self.cf_temperature <= 0:
            raise ValueError(f"cf_temperature must be > 0, got {self.cf_temperature}")
        if self.group_size < 2:
            raise ValueError(
                f"group_size must be >= 2 (an image needs a counterfactual), got {self.group_size}"
            )
        if self.per_device_train_batch_size % self.group_size:
            raise ValueError(
                f"per_device_train_batch_size={self.per_device_train_batch_size} is not divisible by "
                f"group_size={self.group_size}: every batch holds whole groups of group_size images"
            )
        if self.small_groups not in SMALL_GROUP_POLICIES:
            raise ValueError(f"small_groups must be one of {SMALL_GROUP_POLICIES}, got {self.small_groups!r}")
        if self.freeze_vision and self.freeze_text:
            raise ValueError(
                "freeze_vision and freeze_text are both set: nothing but the temperature would train"
            )
        if self.lora_r < 0:
            raise ValueError(f"lora_r must be >= 0 (0 = no LoRA), got {self.lora_r}")
        if self.pixel_cache_mb < 0:
            raise ValueError(f"pixel_cache_mb must be >= 0 (0 = no cache), got {self.pixel_cache_mb}")

    @property
    def frozen_towers(self) -> tuple[str, ...]:
        """Module-name prefixes of the frozen towers."""
        return (VISION_TOWER if self.freeze_vision else ()) + (TEXT_TOWER if self.freeze_text else ())


class _SamplerEpochCallback(TrainerCallback):
    """Sets the sampler's epoch at each epoch start.

    The Trainer does it too, except when it resumes mid-epoch: its skipping wrapper hides the sampler.
    """

    def __init__(self, sampler: GroupBatchSampler):
        self.sampler = sampler

    def on_epoch_begin(self, args, state, control, **kwargs):
        # On resume `state.epoch` is fractional (e.g. 1.5 in the second epoch); the tolerance
        # absorbs the float sum of step fractions.
        self.sampler.set_epoch(math.floor(state.epoch + 1e-6))


class _TrainingRows(torch.utils.data.Dataset):
    """The training dataset as the DataLoader reads it.

    A row that cannot be read (a broken image) is named in the error, with its file when the image
    column records one. With an `image_processor` and a budget, each row's processed image is kept in
    memory (up to `pixel_cache_mb`, in each data-loading process) and later epochs read only the
    row's text columns: decoding and processing the images again would give the same tensors.
    """

    def __init__(self, dataset: datasets.Dataset, image_processor=None, pixel_cache_mb: float = 0):
        self.dataset = dataset
        self.image_processor = image_processor if pixel_cache_mb > 0 else None
        self.budget = pixel_cache_mb * 2**20
        self.pixels: dict[int, torch.Tensor] = {}
        self.cached_bytes = 0
        if self.image_processor is not None:
            self.text_rows = dataset.remove_columns([IMAGE_COLUMN])
            self.image_rows = dataset.select_columns([IMAGE_COLUMN])

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        try:
            return self.dataset[index]
        except Exception as error:
            raise ValueError(f"training dataset row {index}{self._image_file(index)}: cannot be read "
                             f"({type(error).__name__}: {error})") from error  # fmt: skip

    def __getitems__(self, indices: list[int]) -> list[dict]:
        if self.image_processor is not None:
            return self._rows_with_pixels(indices)
        try:
            return self.dataset.__getitems__(indices)
        except Exception:
            for index in indices:
                self[index]  # raises, naming the row
            raise

    def _rows_with_pixels(self, indices: list[int]) -> list[dict]:
        missing = [index for index in dict.fromkeys(indices) if index not in self.pixels]
        fresh = {}
        if missing:
            try:
                images = [row[IMAGE_COLUMN] for row in self.image_rows.__getitems__(missing)]
            except Exception:
                for index in missing:
                    self[index]  # raises, naming the row
                raise
            processed = self.image_processor(images=[image.convert("RGB") for image in images],
                                             return_tensors="pt")["pixel_values"]  # fmt: skip
            for index, pixels in zip(missing, processed):
                fresh[index] = pixels
                if self.cached_bytes + pixels.nbytes <= self.budget:
                    # A copy: a view would keep the whole batch's tensor alive.
                    self.pixels[index] = pixels.clone()
                    self.cached_bytes += pixels.nbytes
        rows = self.text_rows.__getitems__(indices)
        for index, row in zip(indices, rows):
            row[PIXEL_VALUES_KEY] = self.pixels.get(index, fresh.get(index))
        return rows

    def _image_file(self, index: int) -> str:
        import datasets

        if not isinstance(self.dataset.features.get(IMAGE_COLUMN), datasets.Image):
            return ""
        raw = self.dataset.select_columns([IMAGE_COLUMN]).cast_column(IMAGE_COLUMN, datasets.Image(decode=False))
        path = (raw[index][IMAGE_COLUMN] or {}).get("path")
        return f" (image {path!r})" if path else ""


class CounterfactualTrainer(Trainer):
    """A `Trainer` whose training batches hold whole groups (`GroupBatchSampler`).

    Without a `data_collator`, a `CounterfactualCollator` is built from `processing_class` (a
    `CLIPProcessor`) and the group ids of the train and eval datasets.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(self.args, CounterfactualTrainingArguments):
            raise ValueError("CounterfactualTrainer needs CounterfactualTrainingArguments")
        if self.train_dataset is not None:
            check_columns(self.train_dataset.column_names, self.args.caption_suffix_columns)
        # Trainer(model, args, data_collator, ...): the collator may come by position too.
        if kwargs.get("data_collator", args[2] if len(args) > 2 else None) is None:
            if self.processing_class is None:
                raise ValueError(
                    "CounterfactualTrainer needs a data_collator or a CLIPProcessor as processing_class"
                )
            datasets_with_groups = [self.train_dataset, self.eval_dataset]
            group_ids = [
                group_id
                for dataset in datasets_with_groups
                if dataset is not None and GROUP_ID_COLUMN in getattr(dataset, "column_names", ())
                for group_id in dataset[GROUP_ID_COLUMN]
            ]
            self.data_collator = CounterfactualCollator(
                self.processing_class, group_index(group_ids), self.args.caption_suffix_columns
            )

    def _save_checkpoint(self, model, trial) -> None:
        # The Trainer writes a checkpoint file by file: Ctrl-C waits until this one is whole.
        with interrupts_held():
            super()._save_checkpoint(model, trial)

    def get_train_dataloader(self) -> torch.utils.data.DataLoader:
        """Batches of `per_device_train_batch_size / group_size` groups x `group_size`, per process."""
        if self.train_dataset is None:
            raise ValueError("CounterfactualTrainer: training requires a train_dataset")
        batch_size, group_size = self._train_batch_size, self.args.group_size
        if batch_size % group_size:
            raise ValueError(f"batch size {batch_size} is not divisible by group_size={group_size}")
        sampler = GroupBatchSampler(
            self.train_dataset[GROUP_ID_COLUMN],
            groups_per_batch=batch_size // group_size,
            group_size=group_size,
            seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed,
            small_groups=self.args.small_groups,
            num_replicas=self.args.world_size,
            rank=self.args.process_index,
        )
        self.callback_handler.callbacks = [
            callback
            for callback in self.callback_handler.callbacks
            if not isinstance(callback, _SamplerEpochCallback)
        ]
        self.add_callback(_SamplerEpochCallback(sampler))
        # The pixel cache feeds processed images to cf_hf's own collator only (a custom one gets rows).
        image_processor = getattr(self.processing_class, "image_processor", None)
        cache = isinstance(self.data_collator, CounterfactualCollator) and image_processor is not None
        rows = _TrainingRows(self.train_dataset, image_processor, self.args.pixel_cache_mb if cache else 0)
        dataloader = torch.utils.data.DataLoader(
            rows,
            batch_sampler=sampler,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
            persistent_workers=self.args.dataloader_persistent_workers
            and self.args.dataloader_num_workers > 0,
        )
        prepared = self.accelerator.prepare(dataloader)
        # The sampler already gives each process its own groups: make the shard wrapper that
        # `accelerate` adds with several processes a passthrough (as the Trainer does for its
        # rank-aware BatchRebalanceSampler).
        shard_wrapper = getattr(prepared, "batch_sampler", None)
        if shard_wrapper is not sampler and getattr(shard_wrapper, "batch_sampler", None) is sampler:
            shard_wrapper.num_processes = 1
            shard_wrapper.process_index = 0
        return prepared


def freeze_towers(model: CounterfactualCLIPModel, frozen_prefixes: tuple[str, ...]) -> None:
    """Stop gradients to the modules named by `frozen_prefixes` (e.g. `VISION_TOWER`)."""
    for prefix in frozen_prefixes:
        getattr(model, prefix).requires_grad_(False)


def lora_module_names(
    model: torch.nn.Module, targets: list[str] | tuple[str, ...], frozen_prefixes: tuple[str, ...] = ()
) -> list[str]:
    """Full names of the `nn.Linear` modules whose name ends with a target, outside frozen towers.

    Raises a ValueError naming a target that matches no linear module (peft alone would silently
    skip it when another target matches).
    """
    linear_names = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    selected = []
    for target in targets:
        matches = [name for name in linear_names if name == target or name.endswith("." + target)]
        if not matches:
            suffixes = sorted({name.rsplit(".", 1)[-1] for name in linear_names})
            raise ValueError(
                f"LoRA target module {target!r} matches no linear module of the model; "
                f"linear modules are named {suffixes}"
            )
        selected += [name for name in matches if not name.startswith(frozen_prefixes)]
    if not selected:
        raise ValueError(f"the LoRA targets {list(targets)} only match modules of frozen towers")
    return sorted(set(selected))


def apply_lora(model: CounterfactualCLIPModel, args: CounterfactualTrainingArguments):
    """Wrap `model` in a peft `PeftModel` with LoRA adapters on `args.lora_target_modules`."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=lora_module_names(model, args.lora_target_modules, args.frozen_towers),
    )
    return get_peft_model(model, config)


def train(
    model_name_or_path: str,
    dataset: str | datasets.Dataset | datasets.DatasetDict,
    args: CounterfactualTrainingArguments,
    eval_dataset: datasets.Dataset | None = None,
    dataset_split: str = "train",
) -> str:
    """Fine-tune `model_name_or_path` on a counterfactual dataset; return `args.output_dir`.

    Args:
        model_name_or_path: a CLIP checkpoint (Hub id or folder) with its processor.
        dataset: the training data (see `load_training_dataset`), columns `image`, `caption`,
            `group_id`.
        args: the training arguments; `args.resume_from_checkpoint` resumes from a checkpoint folder
            (or the latest in `args.output_dir`: see `resolve_checkpoint`).
        eval_dataset: optional evaluation data, same columns.
        dataset_split: the split to use when `dataset` is a DatasetDict, folder or Hub id.

    The final save writes a standard CLIP checkpoint (LoRA adapters merged) and the processor to
    `args.output_dir`.
    """
    from transformers import CLIPProcessor, set_seed

    from cf_hf.methods.counterfactual.modeling import CounterfactualCLIPModel
    from cf_hf.methods.training_utils import (
        from_pretrained_or_name_the_file,
        load_dataset_or_name_the_file,
        resolve_checkpoint,
    )
    from cf_hf.utils.model_loading import model_loading

    resume_from_checkpoint = resolve_checkpoint(args.resume_from_checkpoint, args.output_dir)
    train_dataset = load_dataset_or_name_the_file(dataset, dataset_split)
    check_columns(train_dataset.column_names, args.caption_suffix_columns)
    check_group_ids(train_dataset[GROUP_ID_COLUMN])
    check_captions(train_dataset[CAPTION_COLUMN])
    set_seed(args.seed)
    with model_loading(str(model_name_or_path), "CLIP model"):
        processor = from_pretrained_or_name_the_file(CLIPProcessor, model_name_or_path, "CLIP processor")
        model = from_pretrained_or_name_the_file(CounterfactualCLIPModel, model_name_or_path, "CLIP model")
    for name in ("beta_clip", "beta_cf", "cf_temperature", "clip_group_positives"):
        setattr(model.config, name, getattr(args, name))
    if args.lora_r > 0:
        model = apply_lora(model, args)
    else:
        freeze_towers(model, args.frozen_towers)

    trainer = CounterfactualTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processor,
    )
    quiet_trainer(trainer)
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)

    final_model = trainer.accelerator.unwrap_model(trainer.model)
    if args.lora_r > 0:
        final_model = final_model.merge_and_unload()
    if trainer.is_world_process_zero():
        with interrupts_held():  # never a half-written final model
            final_model.save_pretrained(args.output_dir)
            processor.save_pretrained(args.output_dir)
    trainer.accelerator.wait_for_everyone()
    return args.output_dir
