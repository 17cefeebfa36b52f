"""`cf-hf generate` end to end on the tiny models: a loadable dataset, a summary, clear errors."""

from __future__ import annotations

import datasets
import pytest
from conftest import assert_no_progress_bar
from testing_utils.generation import one_torch_thread, tiny_cli_args, tiny_components_dir, write_tiny_grid  # noqa: F401

from cf_hf.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")



@pytest.fixture(scope="module")
def tiny_root():
    return tiny_components_dir()


def test_generate_produces_a_loadable_dataset(tiny_root, tmp_path, capfd, progress_bars_restored):
    grid = write_tiny_grid(tmp_path / "grid.yaml")
    assert main(tiny_cli_args(tiny_root, tmp_path / "run", grid, "--fast_inpainting", "--test_size", "0.25")) == 0
    out, err = capfd.readouterr()
    assert_no_progress_bar(err)  # --no_progress: no bar of any library
    for line in ("base images", "counterfactuals", "skipped", "base_images", "masks", "writing", "dataset"):
        assert line in out
    dataset = datasets.load_dataset(str(tmp_path / "run" / "dataset"))
    assert set(dataset) == {"train", "test"}
    assert dataset["train"].features["gender"].names == ["female", "male"]
    assert not set(dataset["train"]["group_id"]) & set(dataset["test"]["group_id"])
    assert "from_pipe" in (tmp_path / "run" / "dataset" / "README.md").read_text()


def test_unknown_concept_file_format(tiny_root, tmp_path, capsys):
    (tmp_path / "concepts.csv").write_text("doctor\n")
    grid = write_tiny_grid(tmp_path / "grid.yaml")
    assert main(tiny_cli_args(tiny_root, tmp_path / "run", grid, "--concepts_file", str(tmp_path / "concepts.csv"))) == 2
    assert "unknown file format '.csv'" in capsys.readouterr().err


def test_empty_grid(tiny_root, tmp_path, capsys):
    (tmp_path / "grid.yaml").write_text("attributes: {}\n")
    assert main(tiny_cli_args(tiny_root, tmp_path / "run", tmp_path / "grid.yaml")) == 2
    assert "attribute grid is empty" in capsys.readouterr().err


def test_output_folder_of_another_run(tiny_root, tmp_path, capsys):
    grid = write_tiny_grid(tmp_path / "grid.yaml")
    args = tiny_cli_args(tiny_root, tmp_path / "run", grid, "--template_captions", "--no_export", "--concepts", "doctor")
    assert main(args) == 0
    assert main([*args, "--seed", "1", "--resume"]) == 2
    assert "holds another run" in capsys.readouterr().err


def test_list_options_take_space_separated_values(tiny_root, tmp_path, capsys):
    grid = write_tiny_grid(tmp_path / "grid.yaml")
    assert main(tiny_cli_args(tiny_root, tmp_path / "run", grid, "--concepts", "doctor,nurse")) == 2
    assert "--concepts takes space-separated values (--concepts doctor nurse)" in capsys.readouterr().err
