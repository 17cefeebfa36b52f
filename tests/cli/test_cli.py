"""The `cf-hf` command as a user meets it: fast --help equal to the real parsers', help text on every
option, one list convention, --version."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from importlib.metadata import version

import pytest

from cf_hf.cli import COMMANDS, main
from cf_hf.cli import help as cli_help

HEAVY_MODULES = ("torch", "transformers", "datasets", "diffusers")


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
    data = json.loads(cli_help.HELP_FILE.read_text(encoding="utf-8"))
    if data["transformers"] != version("transformers"):
        # `--help` then uses the real parser (tested below); the fast path needs a regenerated file.
        pytest.skip(f"help.json was made with transformers {data['transformers']}, {version('transformers')} "
                    "is installed: regenerate it with `python -m cf_hf.cli.help`")
    return data


def test_help_file_equals_a_fresh_build():
    # Fails after an option changes: regenerate with `python -m cf_hf.cli.help`.
    assert _help_file() == json.loads(json.dumps(cli_help.build_help_file()))


@pytest.mark.parametrize("command", sorted(cli_help.FAST_HELP_COMMANDS))
def test_fast_help_is_the_real_parsers_help(command):
    description = _help_file()["commands"][command]
    real = cli_help.real_parser(command)
    light = cli_help.rebuild(description)
    assert light.format_help() == real.format_help()
    options = {option for action in real._actions for option in action.option_strings}
    assert options == {option for action in light._actions for option in action.option_strings}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_imports_no_heavy_library(command):
    _help_file()
    code = (
        "import sys, time; start = time.perf_counter(); from cf_hf.cli import main; "
        f"main([{command!r}, '--help']); "
        "print('SECONDS', time.perf_counter() - start, "
        f"'HEAVY', sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert f"usage: cf-hf {command}" in result.stdout
    assert "HEAVY []" in result.stdout, result.stdout[-300:]


def test_help_falls_back_to_the_real_parser_for_another_transformers(monkeypatch, capsys):
    monkeypatch.setattr(cli_help, "_transformers_version", lambda: "0.0.0")
    assert cli_help.print_help("train") is False
    assert main(["train", "--help"]) == 0
    assert "--caption_suffix_columns" in capsys.readouterr().out


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
