"""`cf-hf train`: fine-tune CLIP with the counterfactual loss (`cf_hf.methods.counterfactual`).

    cf-hf train --dataset path/to/counterfactuals --output_dir outputs/cf-clip \\
        --per_device_train_batch_size 64 --group_size 4 --beta_cf 1.0 --num_train_epochs 1
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from cf_hf.cli.command import QUIET_HELP, Command, interrupted_training
from cf_hf.cli.validation import require_training_length
from cf_hf.methods.counterfactual.trainer import DEFAULT_MODEL, CounterfactualTrainingArguments, train
from cf_hf.utils.model_loading import CLIP_MODEL_TYPE_PREFIX, check_model_source
from cf_hf.utils.output_folder import TRAINER_OUTPUTS, claim_output_folder, training_settings


@dataclass
class TrainCommandArguments:
    """The `cf-hf train` options that are not `TrainingArguments`."""

    dataset: str = field(
        metadata={
            "help": "Counterfactual dataset: a local folder or a Hub id (columns image, caption, group_id)."
        }
    )
    model_name_or_path: str = field(default=DEFAULT_MODEL, metadata={"help": "CLIP checkpoint to fine-tune."})
    dataset_split: str = field(default="train", metadata={"help": "Split of the dataset to train on."})
    overwrite: bool = field(default=False, metadata={
        "help": "Replace an earlier `cf-hf train` run in --output_dir (only what it wrote is deleted)."})
    quiet: bool = field(default=False, metadata={"aliases": ["--no_progress"], "help": QUIET_HELP})


def build_parser():
    """The `cf-hf train` parser: `HfArgumentParser` over `TrainCommandArguments` and
    `CounterfactualTrainingArguments`, with the cf_hf options listed first."""
    import dataclasses

    from transformers import HfArgumentParser

    parser = HfArgumentParser(
        (TrainCommandArguments, CounterfactualTrainingArguments),
        prog="cf-hf train",
        description="Fine-tune CLIP with the counterfactual loss. List options take space-separated values.",
    )
    # The fields declared here (new or redeclared), not those inherited from TrainingArguments.
    ours = {field.name for field in dataclasses.fields(TrainCommandArguments)}
    ours |= set(CounterfactualTrainingArguments.__annotations__)
    groups = {
        True: parser.add_argument_group("cf-hf train options"),
        False: parser.add_argument_group("transformers TrainingArguments"),
    }
    for action in list(parser._optionals._group_actions):
        if action.dest != "help":
            parser._optionals._group_actions.remove(action)
            groups[action.dest in ours]._group_actions.append(action)
    parser._actions.sort(key=lambda action: (action.dest != "help", action.dest not in ours))
    return parser


class TrainCommand(Command):
    """`cf-hf train`: parse the options with `HfArgumentParser`, train, print the output folder."""

    name = "train"

    def build_parser(self):
        return build_parser()

    def parse(self, argv: list[str]):
        """The options, checked before any work (the training length, the output folder's type)."""
        command_args, training_args = super().parse(argv)
        require_training_length(training_args)
        if not training_args.output_dir:
            raise ValueError("--output_dir is required: the folder the checkpoints and the model are written to")
        return command_args, training_args

    def run(self, args) -> int:
        command_args, training_args = args
        check_model_source(command_args.model_name_or_path, role="--model_name_or_path",
                           model_type_prefix=CLIP_MODEL_TYPE_PREFIX)
        claim_output_folder(
            training_args.output_dir, self.name,
            training_settings(training_args, model_name_or_path=command_args.model_name_or_path,
                              dataset=command_args.dataset, dataset_split=command_args.dataset_split),
            owned=TRAINER_OUTPUTS, overwrite=command_args.overwrite,
            resume=training_args.resume_from_checkpoint not in (None, False, "False", "false"))
        # cf_hf's own log lines (e.g. the sampler's group counts); the libraries keep their handlers,
        # and a root handler would print their records twice.
        package_logger = logging.getLogger("cf_hf")
        if not package_logger.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
            package_logger.addHandler(handler)
        package_logger.setLevel(logging.INFO if training_args.should_log else logging.WARNING)
        if command_args.quiet:
            training_args.disable_tqdm = True
        with interrupted_training(training_args.output_dir):
            print(train(command_args.model_name_or_path, command_args.dataset, training_args,
                        dataset_split=command_args.dataset_split))
        return 0
