"""The `cf-hf` command: one subcommand per stage of the method, each a `Command` (`command.py`).

Every subcommand is registered once, in `COMMANDS`, and imported only when called, so that
`cf-hf --help` does not pay for importing torch, transformers and diffusers. This package is the
only place that composes the library's layers into commands; nothing in the library imports it.
"""

from __future__ import annotations

import importlib
import os
import sys

# Errors a subcommand reports as one line (bad options, missing or corrupt files, bad rows): their
# messages name the file, row or option to fix, so a traceback would only hide them.
INPUT_ERRORS = (ValueError, OSError)
# The exit status after Ctrl-C (128 + SIGINT), as a shell reports it.
INTERRUPTED_STATUS = 130

# Commands whose documented numbers come from training on the CPU: their arithmetic is pinned
# (`cf_hf.utils.reproducibility`) before they import torch.
PINNED_ARITHMETIC_COMMANDS = ("demo", "ffr-demo")

# subcommand -> ("module:Command class", one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("cf_hf.cli.generate:GenerateCommand", "synthesise a counterfactual dataset"),
    "verify": ("cf_hf.cli.verify:VerifyCommand", "score counterfactuals, reject failures, report pass rates"),
    "train": ("cf_hf.cli.train:TrainCommand", "fine-tune CLIP with the counterfactual loss"),
    "interpolate": ("cf_hf.cli.interpolate:InterpolateCommand", "write WiSE-FT checkpoints CF_alpha"),
    "evaluate": ("cf_hf.cli.evaluate:EvaluateCommand", "fairness and downstream evaluation"),
    "compare": ("cf_hf.cli.compare:CompareCommand", "fit debiasing methods and compare them under one protocol"),
    "train-ba": ("cf_hf.cli.train_ba:TrainBiasAlignmentCommand", "train the bias-alignment module on a frozen CLIP"),
    "push": ("cf_hf.cli.push:PushCommand", "publish the dataset, models or metrics to the Hub"),
    "demo": ("cf_hf.cli.demo:DemoCommand", "run the whole method on the embedded professions world"),
    "explore": ("cf_hf.cli.explore:ExploreCommand", "see whom each model retrieves for a prompt, in the browser"),
    "metrics-demo": ("cf_hf.cli.metrics_demo:MetricsDemoCommand", "show the fairness metrics on a toy ranking"),
    "classify": ("cf_hf.cli.classify:ClassifyCommand", "train a CLIP image classifier: real, usb, asb or ffr schedule"),
    "ffr-demo": ("cf_hf.cli.ffr_demo:FFRDemoCommand", "From Fake to Real classifiers in the professions world"),
}


def load_command(name: str):
    """The registered `Command` instance of subcommand `name` (imports its module)."""
    module_name, class_name = COMMANDS[name][0].split(":")
    return getattr(importlib.import_module(module_name), class_name)()


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
    lines += [f"  {name:<13} {help_text}" for name, (_, help_text) in COMMANDS.items()]
    lines += ["", "Run `cf-hf <command> --help` for the options of a command; every command also reads them from",
              "a YAML/JSON file with --config FILE (options on the command line override the file)."]
    return "\n".join(lines)


def run_command(name: str, argv: list[str]) -> int:
    """Parse `argv` with the command's parser and run it; an input error (`INPUT_ERRORS`) becomes one
    line on stderr, `cf-hf <name>: error: <message>`, and exit status 2, as argparse reports a bad option."""
    command = load_command(name)
    try:
        args = command.parse(argv)
        if command.quiet(args):
            from cf_hf.utils.logging import silence_progress_bars

            silence_progress_bars(diffusers=command.uses_diffusers)
        return int(command.run(args) or 0)
    except INPUT_ERRORS as error:
        print(f"cf-hf {name}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interruption:
        print(f"cf-hf {name}: interrupted" + (f": {interruption}" if str(interruption) else ""), file=sys.stderr)
        return INTERRUPTED_STATUS


def pin_arithmetic_for(name: str) -> dict[str, str]:
    """Pin the CPU arithmetic for command `name` if it is one of `PINNED_ARITHMETIC_COMMANDS`; return
    the variables set. Says so on stderr when torch was already imported (the pin then cannot act)."""
    if name not in PINNED_ARITHMETIC_COMMANDS:
        return {}
    from cf_hf.utils.reproducibility import pin_cpu_arithmetic, torch_loaded_before_pinning

    applied = pin_cpu_arithmetic()
    if torch_loaded_before_pinning(applied):
        print(f"cf-hf {name}: note: torch was imported before {' and '.join(applied)} could be set, so its "
              "kernels are not the pinned ones and the numbers may differ from docs/reproducibility.md",
              file=sys.stderr)  # fmt: skip
    return applied


def main(argv: list[str] | None = None) -> int:
    """`cf-hf <command> [options]`."""
    # On a machine whose cores are shared, OpenMP threads that spin while they wait made torch up to
    # 28x slower (measured: 8.7 s vs 0.31 s per training step on 2 busy cores); passive waiting costs
    # nothing on an idle one. OpenMP reads it once, when torch loads: set here, before any command
    # imports torch, and never at `import cf_hf` (a library does not change its host's environment).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    if argv[0] == "--version":
        print(f"cf-hf {version()}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"cf-hf: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    if {"-h", "--help"} & set(rest):
        from cf_hf.cli import help as fast_help

        if not fast_help.print_help(name):  # from help.json or the help cache: no heavy library imported
            load_command(name).build_parser().print_help()
        return 0
    torch_already_loaded = "torch" in sys.modules
    pinned = pin_arithmetic_for(name)
    try:
        return run_command(name, rest)
    finally:
        # Where torch was loaded before the pin (a caller of `main` in its own process: a test, a
        # notebook), the pin could not act here; left in the environment it would reach only the
        # processes the caller starts later, which would then compute with other kernels than the
        # caller (a generation killed in a subprocess and resumed in-process differed by it).
        if torch_already_loaded:
            for variable in pinned:
                os.environ.pop(variable, None)
