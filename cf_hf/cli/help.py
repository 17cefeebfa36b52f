"""Fast `--help` for every registered command (`cf_hf.cli.COMMANDS`).

`cf-hf train --help` from `HfArgumentParser` imports transformers and, through `TrainingArguments`,
torch and accelerate: seconds before the first line; other commands' modules import numpy or the
world. Every command's help is printed instead from a description of its real parser (every option
with its help, default, choices and nargs, in order), rebuilt with argparse alone. Options are still
parsed by the real parsers.

Part of a description depends on the installed transformers (`TrainingArguments` gains and loses
options at every release), so a description is only trusted for the transformers version it was made
with. Two places hold them:
- `help.json`, shipped: made by `python -m cf_hf.cli.help` with the locked transformers
  (`constraints.txt`); the tests fail when it differs from a fresh one.
- the help cache, for any other transformers version: the first `--help` of a command builds its real
  parser (slow, once), prints its help and writes its description to
  `<cache>/help/<help.json's fingerprint>/transformers-<version>.json`; later ones read it. `<cache>`
  is `$CF_HF_CACHE`, else `$XDG_CACHE_HOME/cf_hf`, else `~/.cache/cf_hf`. The fingerprint changes
  whenever `help.json` is regenerated (an option changed), so a stale description is never read.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
from pathlib import Path

HELP_FILE = Path(__file__).resolve().with_name("help.json")
# Every registered command but `push`, whose sub-commands argparse cannot describe this way (its parser
# is argparse alone: its help is fast without the file).
FAST_HELP_COMMANDS = ("generate", "verify", "train", "interpolate", "evaluate", "compare", "train-ba", "demo",
                      "explore", "metrics-demo", "classify", "ffr-demo")
FORMATTERS = {
    formatter.__name__: formatter
    for formatter in (
        argparse.HelpFormatter,
        argparse.ArgumentDefaultsHelpFormatter,
        argparse.RawDescriptionHelpFormatter,
        argparse.RawTextHelpFormatter,
    )
}


def _text(value):
    """A default as help shows it (`%(default)s`): None stays None, anything else its str()."""
    return None if value is None else str(value)


def describe(parser: argparse.ArgumentParser) -> dict:
    """Everything the help of `parser` shows, as JSON-ready data."""
    groups = parser._action_groups
    group_of = {id(action): index for index, group in enumerate(groups) for action in group._group_actions}
    return {
        "prog": parser.prog,
        "usage": parser.usage,
        "description": parser.description,
        "epilog": parser.epilog,
        "formatter": parser.formatter_class.__name__,
        "groups": [{"title": group.title, "description": group.description} for group in groups],
        "actions": [
            {
                "group": group_of[id(action)],
                "option_strings": list(action.option_strings),
                "dest": action.dest,
                "nargs": action.nargs,
                "default": _text(action.default),
                "choices": None if action.choices is None else [str(choice) for choice in action.choices],
                "required": action.required,
                "help": action.help,
                "metavar": action.metavar,
            }
            for action in parser._actions
            if not isinstance(action, argparse._HelpAction)
        ],
    }


def rebuild(description: dict) -> argparse.ArgumentParser:
    """A parser whose help is the described parser's (for help only: values are not converted)."""
    parser = argparse.ArgumentParser(
        prog=description["prog"],
        usage=description["usage"],
        description=description["description"],
        epilog=description["epilog"],
        formatter_class=FORMATTERS[description["formatter"]],
    )
    groups = []
    for group in description["groups"]:
        existing = [known for known in parser._action_groups if known.title == group["title"]]
        groups.append(existing[0] if existing else parser.add_argument_group(group["title"], group["description"]))
    for action in description["actions"]:
        settings = {
            "dest": action["dest"],
            "default": action["default"],
            "required": action["required"],
            "help": action["help"],
            "metavar": action["metavar"],
            "choices": action["choices"],
        }
        if action["nargs"] == 0:
            del settings["choices"]
            settings.update(action="store_const", const=None)
        else:
            settings["nargs"] = action["nargs"]
        if not action["option_strings"]:
            del settings["dest"], settings["required"]
            groups[action["group"]].add_argument(action["dest"], **settings)
        else:
            groups[action["group"]].add_argument(*action["option_strings"], **settings)
    return parser


def _transformers_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("transformers")
    except PackageNotFoundError:
        return None


def real_parser(command: str) -> argparse.ArgumentParser:
    """The command's parser as the command itself builds it (imports what it needs)."""
    from cf_hf.cli import load_command

    return load_command(command).build_parser()


def cache_dir() -> Path:
    """cf_hf's cache folder: `$CF_HF_CACHE`, else `$XDG_CACHE_HOME/cf_hf`, else `~/.cache/cf_hf`."""
    if os.environ.get("CF_HF_CACHE"):
        return Path(os.environ["CF_HF_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "cf_hf"


def help_cache_file(transformers_version: str | None) -> Path:
    """Where the descriptions made with `transformers_version` are cached (for this `help.json`)."""
    fingerprint = hashlib.sha256(HELP_FILE.read_bytes()).hexdigest()[:16] if HELP_FILE.is_file() else "none"
    return cache_dir() / "help" / fingerprint / f"transformers-{transformers_version}.json"


def _read_descriptions(path: Path) -> dict:
    """The `commands` of a description file; {} when it is missing or unreadable (a broken cache is
    rebuilt, never an error: help must always print)."""
    try:
        commands = json.loads(path.read_text(encoding="utf-8"))["commands"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return commands if isinstance(commands, dict) else {}


def _cache_description(path: Path, command: str, description: dict) -> None:
    """Add `command`'s description to the cache file `path` (written whole, then renamed: a reader
    never sees half a file). An unwritable cache only costs speed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        commands = _read_descriptions(path) | {command: description}
        data = {"generated_by": "cf_hf.cli.help (a cache: delete at will)",
                "transformers": _transformers_version(), "commands": commands}  # fmt: skip
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, delete=False,
                                         suffix=".tmp") as handle:  # fmt: skip
            json.dump(data, handle, indent=1, ensure_ascii=False)
        os.replace(handle.name, path)
    except OSError:
        return


def fast_description(command: str) -> dict | None:
    """The description `--help` of `command` prints from: `help.json`'s when it was made with the
    installed transformers, else the help cache's; None when neither holds one (or the command has no
    fast help)."""
    if command not in FAST_HELP_COMMANDS:
        return None
    installed = _transformers_version()
    shipped = json.loads(HELP_FILE.read_text(encoding="utf-8")) if HELP_FILE.is_file() else {}
    if shipped.get("transformers") == installed:
        return shipped.get("commands", {}).get(command)
    return _read_descriptions(help_cache_file(installed)).get(command)


def print_help(command: str) -> bool:
    """Print `command`'s help; False (nothing printed) when it has no fast help (`FAST_HELP_COMMANDS`).

    From `fast_description` when there is one; else from the real parser, whose description is then
    cached for the next call (with this transformers version)."""
    if command not in FAST_HELP_COMMANDS:
        return False
    description = fast_description(command)
    if description is not None:
        rebuild(description).print_help()
        return True
    parser = real_parser(command)
    parser.print_help()
    _cache_description(help_cache_file(_transformers_version()), command, json.loads(json.dumps(describe(parser))))
    return True


def build_help_file() -> dict:
    """The description of every command in `FAST_HELP_COMMANDS`, from the real parsers."""
    return {
        "generated_by": "python -m cf_hf.cli.help (do not edit by hand)",
        "transformers": _transformers_version(),
        "commands": {command: describe(real_parser(command)) for command in FAST_HELP_COMMANDS},
    }


def write_help_file(path: Path = HELP_FILE) -> Path:
    """Regenerate `help.json` (run after changing a command's options)."""
    path.write_text(json.dumps(build_help_file(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    print(write_help_file())
