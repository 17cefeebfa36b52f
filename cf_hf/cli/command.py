"""The one shape of a `cf-hf` subcommand (as diffusers' `commands/`): a parser and a `run`.

A command is a `Command` subclass registered once in `cf_hf.cli.COMMANDS`. Its parser is plain
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
        """`argv` parsed: a Namespace, or the tuple of dataclasses of an `HfArgumentParser`."""
        parser = self.parser = self.build_parser()  # kept: `run` may report a bad combination with parser.error
        if hasattr(parser, "parse_args_into_dataclasses"):
            return parser.parse_args_into_dataclasses(args=argv)
        return parser.parse_args(argv)

    def quiet(self, args: Any) -> bool:
        """Whether the run asked for `--quiet` (in a Namespace or any of the parsed dataclasses)."""
        parts = args if isinstance(args, tuple) else (args,)
        return any(getattr(part, "quiet", False) for part in parts)
