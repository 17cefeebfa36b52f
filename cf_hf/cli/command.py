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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

# The one quiet flag, and its older spelling (still accepted).
QUIET_FLAGS = ("--quiet", "--no_progress")
QUIET_HELP = "hide every progress bar and the libraries' load reports (cf_hf's own lines stay)"


def add_quiet_option(parser_or_group) -> None:
    """The `--quiet` option (alias `--no_progress`) on an argparse parser or group."""
    parser_or_group.add_argument(*QUIET_FLAGS, dest="quiet", action="store_true", help=QUIET_HELP)


CONFIG_FLAG = "--config"
# A folder of evaluation galleries with a manifest (`galleries.yaml`, paths relative to the folder), as
# `cf-hf demo` writes them: its options apply where the command has them.
GALLERIES_FLAG = "--galleries"
GALLERIES_MANIFEST = "galleries.yaml"


def _take_option(argv: list[str], flag: str) -> tuple[str | None, list[str]]:
    """The value of `flag` in `argv` (`flag VALUE` or `flag=VALUE`) and the other arguments."""
    rest, value = [], None
    iterator = iter(argv)
    for argument in iterator:
        if argument == flag:
            value = next(iterator, None)
            if value is None or value.startswith("--"):
                raise ValueError(f"{flag} needs a value")
        elif argument.startswith(flag + "="):
            value = argument.split("=", 1)[1]
        else:
            rest.append(argument)
    return value, rest


def _read_options(path: Path, what: str) -> dict:
    import yaml

    try:
        options = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"{what} {path}: cannot read it ({error.strerror or error})") from None
    except yaml.YAMLError as error:
        raise ValueError(f"{what} {path}: not valid YAML/JSON ({error})") from None
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise ValueError(f"{what} {path}: expected a mapping 'option: value', got {type(options).__name__}")
    return options


def _as_arguments(parser: argparse.ArgumentParser, options: dict, what: str, skip_unknown: bool = False) -> list[str]:
    actions = {option: action for action in parser._actions for option in action.option_strings}
    expanded = []
    for key, value in options.items():
        option = key if str(key).startswith("-") else f"--{key}"
        action = actions.get(option)
        if action is None:
            if skip_unknown:
                continue
            raise ValueError(f"{what}: {parser.prog} has no option {option}")
        if action.nargs == 0:  # a flag
            if not isinstance(value, bool):
                raise ValueError(f"{what}: {option} is a flag: give true or false, not {value!r}")
            expanded += [option] if value else []
        elif isinstance(value, list):
            expanded += [option, *map(str, value)]
        else:
            expanded += [option, str(value).lower() if isinstance(value, bool) else str(value)]
    return expanded


def expand_config(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """`argv` with the options of its `--config FILE` and `--galleries DIR` put first, so that the
    command line overrides them.

    `--config FILE` maps option names (with or without `--`) to values: a list gives a space-separated
    list option, `true`/`false` a flag's presence or absence; an option the command does not have is an
    error naming it and the file. `--galleries DIR` reads `DIR/galleries.yaml`, paths relative to DIR:
    its `options` section applies where the command has the option (one manifest serves `evaluate`,
    `compare` and `explore`), and the section named after the command (e.g. `compare`) applies whole."""
    config, rest = _take_option(list(argv), CONFIG_FLAG)
    galleries, rest = _take_option(rest, GALLERIES_FLAG)
    first = []
    if galleries is not None:
        folder = Path(galleries)
        manifest = folder / GALLERIES_MANIFEST
        if not manifest.is_file():
            raise ValueError(f"--galleries {folder}: no {GALLERIES_MANIFEST} there (a folder `cf-hf demo` writes "
                             "under OUTPUT_DIR/galleries)")
        sections = _read_options(manifest, "--galleries")
        command = parser.prog.split()[-1]
        for section, skip_unknown in (("options", True), (command, False)):
            options = sections.get(section) or {}
            if not isinstance(options, dict):
                raise ValueError(f"--galleries {manifest}: section {section!r} must map options to values")
            options = {key: str(folder / value) if isinstance(value, str) and (folder / value).exists() else value
                       for key, value in options.items()}
            first += _as_arguments(parser, options, f"--galleries {manifest}", skip_unknown=skip_unknown)
    if config is not None:
        first += _as_arguments(parser, _read_options(Path(config), "--config"), f"--config {config}")
    return first + rest
class CommandInterrupted(KeyboardInterrupt):
    """Ctrl-C during a command; the message says what was kept and how to continue. The dispatcher
    prints it as one line and exits 130, as a shell does for SIGINT."""


@contextmanager
def interrupted_training(output_dir: str | Path) -> Iterator[None]:
    """Turn Ctrl-C inside a training run into `CommandInterrupted` naming the checkpoint a
    `--resume_from_checkpoint last` continues from (the newest complete one), or that there is none."""
    try:
        yield
    except KeyboardInterrupt:
        from cf_hf.methods.training_utils import latest_complete_checkpoint

        latest = latest_complete_checkpoint(output_dir)
        if latest is None:
            raise CommandInterrupted(f"no checkpoint was saved in {output_dir} yet: run again with --overwrite") from None
        raise CommandInterrupted(f"{latest} is the last complete checkpoint: continue with the same options and "
                                 "--resume_from_checkpoint last") from None


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
