"""`cf-hf classify`: train a CLIP image classifier with the real, usb, asb or ffr schedule, keeping
each stage's epoch with the best validation worst-group accuracy, then evaluate it (worst-group, balanced and mean accuracy, stereotype gap, synthetic-vs-real probe).

Example::

    cf-hf classify --real_dataset path/to/real --synthetic_dataset path/to/counterfactuals \\
        --schedule ffr --loss groupdro --label_column concept --group_column gender \\
        --num_train_epochs 50 --validation_dataset path/to/real_biased_validation \\
        --output_dir outputs/ffr-classifier \\
        --eval_dataset path/to/real_balanced_test --probe_dataset path/to/heldout_counterfactuals
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from cf_hf.cli.command import QUIET_HELP, Command
from cf_hf.cli.validation import require_training_length
from cf_hf.methods.ffr.trainer import DEFAULT_MODEL
from cf_hf.utils.model_loading import CLIP_MODEL_TYPE_PREFIX, check_model_source
from cf_hf.utils.output_folder import TRAINER_OUTPUTS, claim_output_folder, training_settings

RESULTS_FILE = "eval_results.json"


@dataclass
class ClassifyCommandArguments:
    """The `cf-hf classify` options that are not `TrainingArguments`."""

    real_dataset: str = field(metadata={"help": "Real (biased) dataset: a folder or Hub id with image, label and "
                                                "group columns."})
    synthetic_dataset: str | None = field(
        default=None, metadata={"help": "Balanced synthetic dataset (e.g. cf_hf's counterfactual dataset); "
                                        "a pool with enough images per group for usb, asb and ffr."})
    model_name_or_path: str = field(default=DEFAULT_MODEL, metadata={"help": "CLIP checkpoint to start from."})
    real_split: str = field(default="train", metadata={"help": "Split of the real dataset."})
    synthetic_split: str = field(default="train", metadata={"help": "Split of the synthetic dataset."})
    synthetic_stage_dir: str | None = field(
        default=None, metadata={"help": "Where ffr's stage 1 is saved and reused (unset: <output_dir>/synthetic-stage)."})
    validation_dataset: str | None = field(
        default=None, metadata={"help": "Real validation dataset with every (label, group) group, biased like the "
                                        "training data (as the authors make it): each stage keeps its epoch with "
                                        "the best worst-group accuracy on it. Unset: the last epoch is kept."})
    validation_split: str = field(default="validation", metadata={"help": "Split of the validation dataset."})
    eval_dataset: str | None = field(
        default=None, metadata={"help": "Real evaluation dataset (ideally group-balanced) with the same columns."})
    eval_split: str = field(default="test", metadata={"help": "Split of the evaluation dataset."})
    probe_dataset: str | None = field(
        default=None, metadata={"help": "Generated images held out from training: the probe tells them from the "
                                        "evaluation images (needs --eval_dataset)."})
    probe_split: str = field(default="test", metadata={"help": "Split of the probe dataset."})
    overwrite: bool = field(default=False, metadata={
        "help": "Replace an earlier `cf-hf classify` run in --output_dir (only what it wrote is deleted)."})
    quiet: bool = field(default=False, metadata={"aliases": ["--no_progress"], "help": QUIET_HELP})


def build_parser():
    """`HfArgumentParser` over `ClassifyCommandArguments` and `ClassifierTrainingArguments`."""
    from transformers import HfArgumentParser

    from cf_hf.methods.ffr.trainer import ClassifierTrainingArguments

    return HfArgumentParser(
        (ClassifyCommandArguments, ClassifierTrainingArguments), prog="cf-hf classify",
        description="Train a CLIP image classifier (CLIPForImageClassification) on real data, real + synthetic "
                    "data (usb: uneven balancing; asb: added balanced) or synthetic then real data (ffr, From Fake "
                    "to Real), with ERM or GroupDRO.",
    )  # fmt: skip


def _check_evaluation_labels(command: ClassifyCommandArguments, training_args) -> None:
    """Refuse, before training, evaluation labels the real training data does not have: the classifier
    could never predict them (this used to fail only after the training)."""
    from cf_hf.methods.ffr.encoding import column_strings
    from cf_hf.methods.ffr.trainer import load_classification_dataset

    real = load_classification_dataset(command.real_dataset, command.real_split, "real data")
    evaluation = load_classification_dataset(command.eval_dataset, command.eval_split, "evaluation dataset")
    for column in (training_args.label_column, training_args.group_column):
        for dataset, what in ((real, "real data"), (evaluation, "evaluation dataset")):
            if column not in dataset.column_names:
                raise ValueError(f"the {what} has no column {column!r}; it has {dataset.column_names}")
    known = set(column_strings(real, training_args.label_column, "real data"))
    unknown = sorted(set(column_strings(evaluation, training_args.label_column, "evaluation dataset")) - known)
    if unknown:
        raise ValueError(f"--eval_dataset {command.eval_dataset}: labels {unknown[:10]} of column "
                         f"{training_args.label_column!r} are not in the real training data (it has {sorted(known)[:10]})")


class ClassifyCommand(Command):
    """`cf-hf classify`: train, then evaluate when an evaluation set is given."""

    name = "classify"

    def build_parser(self):
        return build_parser()

    def parse(self, argv: list[str]):
        """The options, checked before any training."""
        command, training_args = super().parse(argv)
        require_training_length(training_args)
        if training_args.synthetic_num_train_epochs == 0 or training_args.synthetic_num_train_epochs < -1:
            raise ValueError(f"--synthetic_num_train_epochs={training_args.synthetic_num_train_epochs}: must be > 0, "
                             "or -1 for --num_train_epochs")
        if command.probe_dataset and not command.eval_dataset:
            raise ValueError("--probe_dataset compares generated with real evaluation images: give --eval_dataset")
        return command, training_args

    def run(self, args) -> int:
        command, training_args = args
        check_model_source(command.model_name_or_path, role="--model_name_or_path",
                           model_type_prefix=CLIP_MODEL_TYPE_PREFIX)
        settings = {name: value for name, value in vars(command).items() if name not in {"quiet", "overwrite"}}
        claim_output_folder(training_args.output_dir, self.name, training_settings(training_args, **settings),
                            owned=(*TRAINER_OUTPUTS, "synthetic-stage"), overwrite=command.overwrite)
        if command.eval_dataset:
            _check_evaluation_labels(command, training_args)
        if command.quiet:
            training_args.disable_tqdm = True
        from cf_hf.methods.ffr.card import write_model_card
        from cf_hf.methods.ffr.encoding import column_strings
        from cf_hf.methods.ffr.evaluation import evaluate_checkpoint, majority_values
        from cf_hf.methods.ffr.trainer import load_classification_dataset, train_classifier, training_record

        output_dir = train_classifier(
            command.model_name_or_path, command.real_dataset, command.synthetic_dataset, training_args,
            real_split=command.real_split, synthetic_split=command.synthetic_split,
            synthetic_stage_dir=command.synthetic_stage_dir, validation_dataset=command.validation_dataset,
            validation_split=command.validation_split,
        )  # fmt: skip
        print(output_dir)
        if command.eval_dataset:
            real = load_classification_dataset(command.real_dataset, command.real_split, "real data")
            stereotypes = majority_values(column_strings(real, training_args.label_column, "real data"),
                                          column_strings(real, training_args.group_column, "real data"))
            evaluation = load_classification_dataset(command.eval_dataset, command.eval_split, "evaluation dataset")
            probes = {}
            if command.probe_dataset:
                probes["synthetic"] = load_classification_dataset(command.probe_dataset, command.probe_split, "probe dataset")
            metrics = evaluate_checkpoint(output_dir, evaluation, stereotypes, training_args.label_column,
                                          training_args.group_column, probes, seed=training_args.seed)
            with open(f"{output_dir}/{RESULTS_FILE}", "w", encoding="utf-8") as handle:
                json.dump(metrics, handle, indent=1)
            from transformers import AutoConfig

            write_model_card(output_dir, training_record(AutoConfig.from_pretrained(output_dir)), metrics)
            for name, value in metrics.items():
                print(f"{name}: {value:.4f}")
        return 0

