"""`--config FILE`: any command's options from a YAML/JSON file, the command line overriding them."""

from __future__ import annotations

import json

import pytest

from cf_hf.cli import load_command, main


def _parse(command: str, argv: list[str]):
    return load_command(command).parse(argv)


def test_options_come_from_the_file_and_the_command_line_overrides_them(tmp_path):
    config = tmp_path / "evaluate.yaml"
    config.write_text("model: [a, b]\nk: [10, 20]\noutput_dir: from-file\nno_plots: true\n", encoding="utf-8")
    args = _parse("evaluate", ["--config", str(config), "--output_dir", "from-cli"])
    assert args.model == ["a", "b"] and args.ks == [10, 20] and args.no_plots
    assert args.output_dir == "from-cli"


def test_a_dataclass_command_reads_json_too(tmp_path):
    config = tmp_path / "interpolate.json"
    config.write_text(json.dumps({"original": "o", "finetuned": "f", "output_dir": "out", "alphas": [0, 0.5],
                                  "overwrite": True}), encoding="utf-8")
    (args,) = _parse("interpolate", [f"--config={config}"])
    assert (args.original, args.alphas, args.overwrite) == ("o", [0.0, 0.5], True)


@pytest.mark.parametrize("content, message", [
    ("colour: red\n", "has no option --colour"),
    ("- a\n- b\n", "expected a mapping"),
    ("no_plots: yes please\n", "is a flag"),
    ("k: [1\n", "not valid YAML"),
])
def test_a_bad_config_file_is_one_line_naming_it(tmp_path, capsys, content, message):
    config = tmp_path / "bad.yaml"
    config.write_text(content, encoding="utf-8")
    assert main(["evaluate", "--config", str(config), "--output_dir", "x"]) == 2
    error = capsys.readouterr().err
    assert message in error and str(config) in error and "Traceback" not in error


def test_a_missing_config_file_is_named(tmp_path, capsys):
    assert main(["evaluate", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: cannot read it" in capsys.readouterr().err
