"""The `cf-hf` command as a user meets it: fast --help equal to the real parsers', help text on every
option, one list convention, --version."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from cf_hf.cli import COMMANDS, main
from cf_hf.cli import help as cli_help

HEAVY_MODULES = ("torch", "transformers", "datasets", "diffusers")
ROOT = Path(__file__).resolve().parents[2]


def _parsers() -> dict[str, argparse.ArgumentParser]:
    from cf_hf.cli.evaluate import build_parser as evaluate_parser

    return {command: cli_help.real_parser(command) for command in COMMANDS} | {
        "evaluate": evaluate_parser()
    }


def _own_options(command: str, parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The options cf_hf declares (for train: not those inherited from TrainingArguments)."""
    if command == "train":
        (group,) = [group for group in parser._action_groups if group.title == "cf-hf train options"]
        return list(group._group_actions)
    return [action for action in parser._actions if not isinstance(action, argparse._HelpAction)]


def _help_file() -> dict:
    return json.loads(cli_help.HELP_FILE.read_text(encoding="utf-8"))


def _locked_version(package: str) -> str:
    """The version constraints.txt pins `package` to."""
    constraints = (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
    (pinned,) = [line.split("==")[1] for line in constraints if line.lower().startswith(f"{package}==")]
    return pinned


def _cf_hf_options(data: dict) -> dict:
    """Per command, what help.json says of the options cf_hf declares (not those of `TrainingArguments`,
    which change with the transformers release)."""
    from transformers import TrainingArguments

    inherited = {field.name for field in dataclasses.fields(TrainingArguments)}
    return {command: [(action["option_strings"], action["help"], action["default"], action["choices"])
                      for action in description["actions"] if action["dest"] not in inherited]
            for command, description in data["commands"].items()}  # fmt: skip


@pytest.fixture
def help_cache(tmp_path, monkeypatch):
    """An empty help cache of the test's own (the variable reaches subprocesses too)."""
    monkeypatch.setenv("CF_HF_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_help_file_is_made_with_the_locked_transformers():
    # `make test` installs the lock, so its fast help reads help.json; other versions use the cache.
    assert _help_file()["transformers"] == _locked_version("transformers")


def test_help_file_describes_the_cf_hf_options_as_the_parsers_do():
    # Under any transformers. Fails after an option changes: regenerate with `python -m cf_hf.cli.help`.
    assert _cf_hf_options(_help_file()) == _cf_hf_options(json.loads(json.dumps(cli_help.build_help_file())))


def test_help_file_equals_a_fresh_build_with_its_transformers():
    fresh = json.loads(json.dumps(cli_help.build_help_file()))
    if fresh["transformers"] == _help_file()["transformers"]:
        assert _help_file() == fresh
    else:  # another release: help.json is not read, the cache is (the tests below)
        assert cli_help.fast_description("train") is None


@pytest.mark.parametrize("command", sorted(cli_help.FAST_HELP_COMMANDS))
def test_fast_help_is_the_real_parsers_help(command, help_cache, capsys):
    cli_help.print_help(command)  # with another transformers than help.json's: fills the cache
    real = cli_help.real_parser(command)
    assert capsys.readouterr().out == real.format_help()
    light = cli_help.rebuild(cli_help.fast_description(command))
    assert light.format_help() == real.format_help()
    options = {option for action in real._actions for option in action.option_strings}
    assert options == {option for action in light._actions for option in action.option_strings}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_imports_no_heavy_library(command, help_cache, capsys):
    cli_help.print_help(command)  # the first --help with a transformers other than help.json's
    code = (
        "import sys, time; start = time.perf_counter(); from cf_hf.cli import main; "
        f"main([{command!r}, '--help']); "
        "print('SECONDS', time.perf_counter() - start, "
        f"'HEAVY', sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert f"usage: cf-hf {command}" in result.stdout
    assert "HEAVY []" in result.stdout, result.stdout[-300:]


def test_help_for_another_transformers_is_built_once_then_cached(monkeypatch, help_cache, capsys):
    monkeypatch.setattr(cli_help, "_transformers_version", lambda: "0.0.0")
    assert cli_help.fast_description("train") is None
    assert main(["train", "--help"]) == 0
    first = capsys.readouterr().out
    assert "--caption_suffix_columns" in first
    assert cli_help.help_cache_file("0.0.0").is_file()
    assert cli_help.help_cache_file("0.0.0").is_relative_to(help_cache)

    def no_real_parser(command):
        raise AssertionError(f"the real parser of {command} was built again")

    monkeypatch.setattr(cli_help, "real_parser", no_real_parser)
    assert main(["train", "--help"]) == 0
    assert capsys.readouterr().out == first


def test_a_regenerated_help_file_is_never_served_from_an_old_cache(monkeypatch, help_cache, tmp_path):
    help_file = tmp_path / "help.json"
    help_file.write_text(cli_help.HELP_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(cli_help, "HELP_FILE", help_file)
    before = cli_help.help_cache_file("0.0.0")
    help_file.write_text(help_file.read_text(encoding="utf-8").replace("Run folder", "The run folder"))
    assert cli_help.help_cache_file("0.0.0") != before


@pytest.mark.parametrize("content", ["{not json", '{"commands": []}', '{"other": 1}'])
def test_a_broken_help_cache_is_rebuilt(monkeypatch, help_cache, capsys, content):
    monkeypatch.setattr(cli_help, "_transformers_version", lambda: "0.0.0")
    cache_file = cli_help.help_cache_file("0.0.0")
    cache_file.parent.mkdir(parents=True)
    cache_file.write_text(content)
    assert cli_help.print_help("demo") is True
    assert "usage: cf-hf demo" in capsys.readouterr().out
    assert "demo" in json.loads(cache_file.read_text())["commands"]


def test_an_unwritable_help_cache_still_prints_help(monkeypatch, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("CF_HF_CACHE", str(tmp_path / "file" / "cache"))  # below a file: cannot be made
    monkeypatch.setattr(cli_help, "_transformers_version", lambda: "0.0.0")
    assert cli_help.print_help("demo") is True
    assert "usage: cf-hf demo" in capsys.readouterr().out


def test_train_help_lists_the_cf_hf_options_first():
    parser = cli_help.real_parser("train")
    groups = [group.title for group in parser._action_groups if group._group_actions]
    assert groups[1:] == ["cf-hf train options", "transformers TrainingArguments"]
    own = [action.dest for action in _own_options("train", parser)]
    assert {"dataset", "output_dir", "beta_cf", "group_size", "caption_suffix_columns", "quiet"} <= set(own)
    usage = parser.format_usage()
    assert usage.index("--beta_cf") < usage.index("--learning_rate")


@pytest.mark.parametrize("command", ["train", "generate", "demo", "evaluate", "verify"])
def test_every_option_has_help_and_states_no_second_default(command):
    parser = _parsers()[command]
    assert parser.formatter_class is argparse.ArgumentDefaultsHelpFormatter  # the one "(default: ...)"
    for action in _own_options(command, parser):
        assert action.help and action.help.strip(), f"{command} {action.option_strings}: no help"
        assert "default" not in action.help.lower(), f"{command} {action.option_strings}: {action.help!r}"


@pytest.mark.parametrize("command", ["train", "generate", "demo", "evaluate", "verify"])
def test_list_options_are_space_separated(command):
    for action in _own_options(command, _parsers()[command]):
        assert "comma" not in (action.help or "").lower(), f"{command} {action.option_strings}: {action.help!r}"
        if action.dest in {"caption_suffix_columns", "lora_target_modules", "concepts", "mask_labels",
                           "optional_attributes", "alphas", "model", "attribute_columns"}:
            assert action.nargs == "+", f"{command} {action.option_strings}"


def test_comma_separated_caption_suffix_columns_explain_the_convention(tiny_clip_dir, tmp_path, capsys):
    from testing_utils.training import make_counterfactual_dataset

    make_counterfactual_dataset(num_groups=2, members=2).save_to_disk(tmp_path / "dataset")
    argv = ["train", "--model_name_or_path", str(tiny_clip_dir), "--dataset", str(tmp_path / "dataset"),
            "--output_dir", str(tmp_path / "out"), "--caption_suffix_columns", "framing,lighting"]
    assert main(argv) == 2
    assert "--caption_suffix_columns takes space-separated names" in capsys.readouterr().err


def test_version_prints_the_package_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"cf-hf {version('cf_hf')}"


def test_push_datasets_take_space_separated_values_and_repeat():
    from cf_hf.cli.push import build_parser as _parser

    args = _parser().parse_args(["model", "sweep", "--repo_id", "org/m", "--dataset", "org/a", "org/b",
                                 "--dataset", "org/c"])
    assert args.datasets == ["org/a", "org/b", "org/c"]


@pytest.mark.parametrize("command", sorted(set(COMMANDS) - {"push", "metrics-demo"}))
def test_every_command_has_the_one_quiet_flag_and_its_older_spelling(command):
    options = {option for action in cli_help.real_parser(command)._actions for option in action.option_strings}
    assert {"--quiet", "--no_progress"} <= options


def test_every_registered_command_has_the_one_command_shape():
    from cf_hf.cli import load_command
    from cf_hf.cli.command import Command

    for name in COMMANDS:
        command = load_command(name)
        assert isinstance(command, Command) and command.name == name
