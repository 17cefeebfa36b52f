"""The one shape of a `cf-hf` subcommand (as diffusers' `commands/`): a parser and a `run`.

A command is a `Command` subclass registered once in `cf_hf.cli.COMMANDS`. Every command also takes
`--config FILE` (YAML/JSON `option: value`; the command line overrides it). Its parser is plain
argparse, or an `HfArgumentParser` when its options are dataclasses (`TrainingArguments` and its
subclasses); `parse` returns an `argparse.Namespace` or the tuple of dataclasses. The dispatcher
(`cf_hf.cli.main`) silences the libraries' progress bars when `quiet(args)` says so, and turns an
input error into one line and exit status 2: a command raises, it never prints its own errors.
"""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

# The one quiet flag, and its older spelling (still accepted).
QUIET_FLAGS = ("--quiet", "--no_progress")
QUIET_HELP = "hide every progress bar and the libraries' load reports (cf_hf's own lines stay)"


def add_quiet_option(parser_or_group) -> None:
    """The `--quiet` option (alias `--no_progress`) on an argparse parser or group."""
    parser_or_group.add_argument(*QUIET_FLAGS, dest="quiet", action="store_true", help=QUIET_HELP)


CONFIG_FLAG = "--config"


def _config_file(argv: list[str]) -> tuple[str | None, list[str]]:
    """The `--config FILE` of `argv` (also `--config=FILE`) and the other arguments."""
    rest, path = [], None
    iterator = iter(argv)
    for argument in iterator:
        if argument == CONFIG_FLAG:
            path = next(iterator, None)
            if path is None:
                raise ValueError("--config needs a file: --config options.yaml")
        elif argument.startswith(CONFIG_FLAG + "="):
            path = argument.split("=", 1)[1]
        else:
            rest.append(argument)
    return path, rest


def expand_config(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """`argv` with the options of its `--config FILE` put first, so that the command line overrides them.

    The file maps option names (with or without `--`) to values: a list gives a space-separated list
    option, `true`/`false` a flag's presence or absence. An option the command does not have is an
    error naming it and the file."""
    path, rest = _config_file(list(argv))
    if path is None:
        return rest
    import yaml

    try:
        options = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"--config {path}: cannot read it ({error.strerror or error})") from None
    except yaml.YAMLError as error:
        raise ValueError(f"--config {path}: not valid YAML/JSON ({error})") from None
    if options is None:
        return rest
    if not isinstance(options, dict):
        raise ValueError(f"--config {path}: expected a mapping 'option: value', got {type(options).__name__}")
    actions = {option: action for action in parser._actions for option in action.option_strings}
    expanded = []
    for key, value in options.items():
        option = key if str(key).startswith("-") else f"--{key}"
        action = actions.get(option)
        if action is None:
            raise ValueError(f"--config {path}: {parser.prog} has no option {option}")
        if action.nargs == 0:  # a flag
            if not isinstance(value, bool):
                raise ValueError(f"--config {path}: {option} is a flag: give true or false, not {value!r}")
            expanded += [option] if value else []
        elif isinstance(value, list):
            expanded += [option, *map(str, value)]
        else:
            expanded += [option, str(value).lower() if isinstance(value, bool) else str(value)]
    return expanded + rest


class Command(ABC):
    """One `cf-hf` subcommand.

    Attributes:
        name: the subcommand (`cf-hf <name>`).
        uses_diffusers: whether `--quiet` also silences diffusers' bars (importing it costs seconds).
    """

    name: ClassVar[str]
    uses_diffusers: ClassVar[bool] = False

    @abstractmethod
    def build_parser(self) -> argparse.ArgumentParser:
        """The command's parser (argparse, or `HfArgumentParser` over its dataclasses)."""

    @abstractmethod
    def run(self, args: Any) -> int | None:
        """Do the work; raise `ValueError`/`OSError` with a message naming what to fix."""

    def parse(self, argv: list[str]) -> Any:
        """`argv` parsed: a Namespace, or the tuple of dataclasses of an `HfArgumentParser`.

        `--config FILE` (YAML or JSON, `option: value`) supplies options; those given on the command
        line override it."""
        parser = self.parser = self.build_parser()  # kept: `run` may report a bad combination with parser.error
        argv = expand_config(parser, argv)
        if hasattr(parser, "parse_args_into_dataclasses"):
            return parser.parse_args_into_dataclasses(args=argv)
        return parser.parse_args(argv)

    def quiet(self, args: Any) -> bool:
        """Whether the run asked for `--quiet` (in a Namespace or any of the parsed dataclasses)."""
        parts = args if isinstance(args, tuple) else (args,)
        return any(getattr(part, "quiet", False) for part in parts)
