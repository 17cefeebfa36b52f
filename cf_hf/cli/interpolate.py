"""`cf-hf interpolate`: write the WiSE-FT checkpoints CF_alpha between an original and a fine-tuned CLIP."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cf_hf.cli.command import QUIET_HELP, Command
from cf_hf.interpolation import ALPHA_FOLDER_PREFIX, DEFAULT_ALPHAS, SWEEP_FILE, alpha_key, interpolate_sweep
from cf_hf.interpolation.wise_ft import check_alphas, check_processor_folder
from cf_hf.utils.model_loading import CLIP_MODEL_TYPE_PREFIX, check_model_source
from cf_hf.utils.output_folder import claim_output_folder


@dataclass
class InterpolationArguments:
    """Options of `cf-hf interpolate`."""

    original: str = field(metadata={"help": "original checkpoint folder or Hub repo id (alpha = 0)"})
    finetuned: str = field(metadata={"help": "fine-tuned (LoRA-merged) checkpoint folder or Hub repo id (alpha = 1)"})
    output_dir: str = field(metadata={"help": "sweep folder: alpha-<a>/ per alpha + sweep.json"})
    alphas: list[float] = field(
        default_factory=lambda: list(DEFAULT_ALPHAS), metadata={"help": "alphas to write, space-separated"}
    )
    allow_extrapolation: bool = field(default=False, metadata={"help": "accept alphas outside [0, 1]"})
    processor_from: str | None = field(default=None, metadata={"help": "folder to copy the processor from; unset: the fine-tuned checkpoint's, else the original's"})
    overwrite: bool = field(default=False, metadata={"help": "replace the alpha-* folders of the given alphas that an earlier run wrote (other files are never deleted)"})
    quiet: bool = field(default=False, metadata={"aliases": ["--no_progress"], "help": QUIET_HELP})


def build_parser():
    """The `cf-hf interpolate` parser: `HfArgumentParser` over `InterpolationArguments`."""
    from transformers import HfArgumentParser

    return HfArgumentParser(InterpolationArguments, prog="cf-hf interpolate", description=__doc__.split("\n\n")[0])


class InterpolateCommand(Command):
    """`cf-hf interpolate --original A --finetuned B --alphas 0 0.25 0.5 0.75 1 --output_dir OUT`."""

    name = "interpolate"

    def build_parser(self):
        return build_parser()

    def parse(self, argv: list[str]):
        """The options, checked before any weights are read."""
        (args,) = super().parse(argv)
        check_alphas(args.alphas, args.allow_extrapolation)
        check_processor_folder(args.processor_from)
        return (args,)

    def run(self, args) -> int:
        (args,) = args
        for role in ("original", "finetuned"):
            check_model_source(getattr(args, role), role=f"--{role}", model_type_prefix=CLIP_MODEL_TYPE_PREFIX)
        # sweep.json's endpoint fingerprints say which sweep the folder holds (`interpolate_sweep` refuses
        # another); the marker says that the folder is cf-hf interpolate's.
        claim_output_folder(args.output_dir, self.name, owned=(f"{ALPHA_FOLDER_PREFIX}*", SWEEP_FILE),
                            earlier_record=SWEEP_FILE)
        sweep = interpolate_sweep(
            args.original, args.finetuned, args.alphas, args.output_dir,
            allow_extrapolation=args.allow_extrapolation, processor_from=args.processor_from,
            overwrite=args.overwrite,
        )
        for entry in sweep["alphas"]:
            print(f"{alpha_key(entry['alpha'])}: {Path(args.output_dir) / entry['path']}")
        return 0
