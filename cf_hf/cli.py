"""The `cf-hf` command: one subcommand per stage of the method.

Each subcommand lives next to the code it runs and is imported only when called, so that
`cf-hf --help` does not pay for importing torch, transformers and diffusers.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

# Errors a subcommand reports as one line (bad options, missing or corrupt files, bad rows): their
# messages name the file, row or option to fix, so a traceback would only hide them.
INPUT_ERRORS = (ValueError, OSError)

# subcommand -> (module, function taking argv, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "generate": ("cf_hf.generation.cli", "main", "synthesise a counterfactual dataset"),
    "verify": ("cf_hf.generation.verify_cli", "main", "score counterfactuals, reject failures, report pass rates"),
    "train": ("cf_hf.training", "main", "fine-tune CLIP with the counterfactual loss"),
    "interpolate": ("cf_hf.interpolation", "main", "write WiSE-FT checkpoints CF_alpha"),
    "evaluate": ("cf_hf.evaluation.cli", "main", "fairness and downstream evaluation"),
    "compare": ("cf_hf.methods.cli", "main", "fit debiasing methods and compare them under one protocol"),
    "train-ba": ("cf_hf.methods.bias_alignment_training", "main", "train the bias-alignment module on a frozen CLIP"),
    "push": ("hub_scripts.cli", "main", "publish the dataset, models or metrics to the Hub"),
    "demo": ("cf_hf.world.demo", "main", "run the whole method on the embedded professions world"),
    "explore": ("cf_hf.explorer.cli", "main", "see whom each model retrieves for a prompt, in the browser"),
    "metrics-demo": ("cf_hf.metrics.showcase", "main", "show the fairness metrics on a toy ranking"),
    "classify": ("cf_hf.classification.cli", "main", "train a CLIP image classifier: real, mixed or ffr schedule"),
    "ffr-demo": ("cf_hf.world.ffr", "main", "From Fake to Real classifiers in the professions world"),
}


def run_reporting_errors(command: str, work: Callable[[], int | None]) -> int:
    """Run a subcommand's `work()`; an input error (`INPUT_ERRORS`) becomes one line on stderr,
    `cf-hf <command>: error: <message>`, and exit status 2, as argparse reports a bad option."""
    try:
        return int(work() or 0)
    except INPUT_ERRORS as error:
        print(f"cf-hf {command}: error: {error}", file=sys.stderr)
        return 2


def silence_progress_bars(diffusers: bool = False) -> None:
    """Hide the progress bars of datasets, transformers, huggingface_hub and, when asked (it costs
    seconds to import), diffusers: what `--no_progress` means beyond the subcommand's own bars."""
    import datasets
    import huggingface_hub.utils
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()
    if diffusers:
        import diffusers.utils.logging

        diffusers.utils.logging.disable_progress_bar()


def version() -> str:
    """The installed cf_hf version (package metadata), or the source tree's when not installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("cf_hf")
    except PackageNotFoundError:
        from cf_hf import __version__

        return __version__


def _usage() -> str:
    lines = ["usage: cf-hf [--version] <command> [options]", "", "commands:"]
    lines += [f"  {name:<13} {help_text}" for name, (_, _, help_text) in SUBCOMMANDS.items()]
    lines += ["", "Run `cf-hf <command> --help` for the options of a command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    if argv[0] == "--version":
        print(f"cf-hf {version()}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in SUBCOMMANDS:
        print(f"cf-hf: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    if {"-h", "--help"} & set(rest):
        from cf_hf import cli_help

        if cli_help.print_help(command):  # without importing the command's heavy libraries
            return 0
    module_name, function_name, _ = SUBCOMMANDS[command]
    function = getattr(importlib.import_module(module_name), function_name)
    return int(function(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
