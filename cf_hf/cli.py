"""The `cf-hf` command: one subcommand per stage of the method.

Each subcommand lives next to the code it runs and is imported only when called, so that
`cf-hf --help` does not pay for importing torch, transformers and diffusers.
"""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module, function taking argv, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "generate": ("cf_hf.generation.cli", "main", "synthesise a counterfactual dataset"),
    "train": ("cf_hf.training", "main", "fine-tune CLIP with the counterfactual loss"),
    "interpolate": ("cf_hf.interpolation", "main", "write WiSE-FT checkpoints CF_alpha"),
    "evaluate": ("cf_hf.evaluation.cli", "main", "fairness and downstream evaluation"),
    "push": ("hub_scripts.cli", "main", "publish the dataset, models or metrics to the Hub"),
    "demo": ("cf_hf.world.demo", "main", "run the whole method on the embedded professions world"),
    "metrics-demo": ("cf_hf.metrics.showcase", "main", "show the fairness metrics on a toy ranking"),
}


def _usage() -> str:
    lines = ["usage: cf-hf <command> [options]", "", "commands:"]
    lines += [f"  {name:<13} {help_text}" for name, (_, _, help_text) in SUBCOMMANDS.items()]
    lines += ["", "Run `cf-hf <command> --help` for the options of a command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in SUBCOMMANDS:
        print(f"cf-hf: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, function_name, _ = SUBCOMMANDS[command]
    function = getattr(importlib.import_module(module_name), function_name)
    return int(function(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
