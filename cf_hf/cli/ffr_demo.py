"""`cf-hf ffr-demo`: the From Fake to Real experiment in the professions world."""

from __future__ import annotations

from dataclasses import dataclass, field

from cf_hf.cli.command import QUIET_HELP, Command
from cf_hf.cli.validation import require_all_positive, require_in_range, require_positive
from cf_hf.utils.output_folder import claim_output_folder
from cf_hf.world.ffr.experiment import DEFAULT_SIGNATURE, SCHEDULES, FFRConfig

_DEFAULTS = FFRConfig()


@dataclass
class FFRDemoArguments:
    """Options of `cf-hf ffr-demo` (the defaults are the experiment in README)."""

    output_dir: str = field(default="outputs/ffr-demo", metadata={"help": "Folder for data, models, results, report."})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Seeds (space-separated)."})
    bias_levels: list[float] = field(
        default_factory=lambda: [0.95, 0.99, 0.999], metadata={"help": "Share of each profession showing its "
                                                                      "stereotyped gender in the real data."})
    signatures: list[float] = field(
        default_factory=lambda: [0.0, DEFAULT_SIGNATURE],
        metadata={"help": "Generator signature strengths (0-255 levels; 0 = off) of the synthetic data."})
    schedules: list[str] = field(
        default_factory=lambda: list(SCHEDULES),
        metadata={"help": "Schedules: real, usb (uneven synthetic balancing), asb (added synthetic balanced), ffr."})
    losses: list[str] = field(default_factory=lambda: ["erm", "groupdro"], metadata={"help": "Losses."})
    per_class: int = field(default=500, metadata={"help": "Real training images per profession."})
    validation_per_class: int = field(
        default=_DEFAULTS.validation_per_class,
        metadata={"help": "Real validation images per profession, biased like the training data (each stage keeps its "
                          "epoch with the best validation worst-group accuracy)."})
    test_per_group: int = field(default=50, metadata={"help": "Real test images per (profession, gender)."})
    epochs: float = field(default=_DEFAULTS.epochs, metadata={"help": "Epochs of each stage on real or mixed data."})
    synthetic_epochs: float = field(default=_DEFAULTS.synthetic_epochs, metadata={"help": "Epochs of ffr's stage 1."})
    batch_size: int = field(default=32, metadata={"help": "Training batch size."})
    learning_rate: float = field(default=3e-4, metadata={"help": "Learning rate of every stage."})
    overwrite: bool = field(default=False, metadata={
        "help": "Replace an earlier `cf-hf ffr-demo` run with other settings in --output_dir (only what it wrote is deleted)."})
    quiet: bool = field(default=False, metadata={"aliases": ["--no_progress"], "help": QUIET_HELP})


def build_parser():
    from transformers import HfArgumentParser

    return HfArgumentParser(
        FFRDemoArguments, prog="cf-hf ffr-demo",
        description="From Fake to Real in the professions world: profession classifiers trained with the "
                    "schedules real, usb, asb and ffr (ERM and GroupDRO) at several bias levels, with the synthetic "
                    "data's generator signature off and on. Resumes from the results in --output_dir.",
    )  # fmt: skip


class FFRDemoCommand(Command):
    """`cf-hf ffr-demo`: run (or resume) the experiment, print its table."""

    name = "ffr-demo"

    def build_parser(self):
        return build_parser()

    def parse(self, argv: list[str]):
        """The options, checked before any data is generated."""
        (args,) = super().parse(argv)
        for option in ("per_class", "validation_per_class", "test_per_group", "epochs", "batch_size", "learning_rate"):
            require_positive(option, getattr(args, option))
        require_positive("synthetic_epochs", args.synthetic_epochs, allow_zero=True)
        for option in ("seeds", "bias_levels", "signatures", "schedules", "losses"):
            if not getattr(args, option):
                raise ValueError(f"--{option}: give at least one value")
        require_all_positive("signatures", args.signatures, allow_zero=True)
        for bias in args.bias_levels:
            require_in_range("bias_levels", bias, 0.0, 1.0)
        return (args,)

    def run(self, args) -> int:
        (args,) = args
        from cf_hf.world.ffr.experiment import (
            GRID_SETTINGS,
            REPORT_FILE,
            FFRConfig,
            run_experiment,
            summary_table,
        )

        if args.quiet:
            from transformers.utils import logging as transformers_logging

            # Each classifier starts from a CLIP checkpoint: its load report (the text tower left
            # out, the new head initialised) is expected, not news.
            transformers_logging.set_verbosity_error()

        config = FFRConfig(
            bias_levels=args.bias_levels, signatures=args.signatures, schedules=args.schedules, losses=args.losses,
            seeds=args.seeds, per_class=args.per_class, test_per_group=args.test_per_group,
            validation_per_class=args.validation_per_class, epochs=args.epochs, synthetic_epochs=args.synthetic_epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
        )  # fmt: skip
        # The grid may grow between runs (its cells are keyed); every other setting must stay, or the
        # folder's results would be reused under the new settings.
        settings = {name: value for name, value in vars(args).items()
                    if name not in {*GRID_SETTINGS, "quiet", "overwrite", "output_dir"}}
        claim_output_folder(args.output_dir, self.name, settings, overwrite=args.overwrite,
                            owned=("data", "seed-*", "results.jsonl", "config.json", "*.md", "*.png", "plots"))
        results = run_experiment(config, args.output_dir, quiet=args.quiet)
        print(summary_table(results, config))
        print(f"report: {args.output_dir}/{REPORT_FILE}")
        return 0
