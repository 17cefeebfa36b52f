"""Resumption for real: a `cf-hf generate` subprocess killed by SIGKILL mid-run, then resumed,
gives exactly the run an uninterrupted process gives (same rows, same image bytes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from testing_utils.generation import (
    one_torch_thread,  # noqa: F401 (a fixture, used by name below)
    read_run_rows,
    tiny_cli_args,
    tiny_components_dir,
    write_tiny_grid,
)

from cf_hf.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


REPOSITORY = Path(__file__).resolve().parents[2]
NUM_SHARDS = 8  # 2 concepts x 2 captions x 2 decorator draws, one base image per shard
KILL_AFTER_SHARDS = 2
DEADLINE_SECONDS = 240


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, capsys):
    root = tiny_components_dir()
    grid = write_tiny_grid(tmp_path / "grid.yaml")
    killed = tmp_path / "killed"
    args = tiny_cli_args(root, killed, grid, "--shard_size", "1", "--no_export")
    # One thread, like this process under `one_torch_thread`.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "cf_hf.cli", *args], cwd=REPOSITORY, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + DEADLINE_SECONDS
    while process.poll() is None and time.monotonic() < deadline:
        if len(list((killed / "shards").glob("shard-*.json"))) >= KILL_AFTER_SHARDS:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    finished_before = len(list((killed / "shards").glob("shard-*.json")))
    assert KILL_AFTER_SHARDS <= finished_before < NUM_SHARDS
    assert not json.loads((killed / "manifest.json").read_text())["complete"]

    assert main([*args, "--resume"]) == 0
    summary = capsys.readouterr().out
    assert f"{NUM_SHARDS - finished_before} generated now, {finished_before} already done" in summary

    uninterrupted = tmp_path / "uninterrupted"
    assert main(tiny_cli_args(root, uninterrupted, grid, "--shard_size", "1", "--no_export")) == 0
    assert read_run_rows(killed) == read_run_rows(uninterrupted)  # same rows, same image bytes
    manifests = [json.loads((run / "manifest.json").read_text()) for run in (killed, uninterrupted)]
    assert manifests[0]["shards"] == manifests[1]["shards"] and manifests[0]["totals"] == manifests[1]["totals"]


def _stop_at(monkeypatch, stop_when):
    """Make the run folder's atomic writer raise KeyboardInterrupt (a kill, as far as the folder can tell)
    at the first write for which `stop_when(path, data)` is true, after doing what the kill left behind."""
    from cf_hf.generation import run_folder

    write = run_folder.write_atomically

    def write_or_stop(path, data):
        if stop_when(Path(path), data):
            monkeypatch.setattr(run_folder, "write_atomically", write)
            raise KeyboardInterrupt
        write(path, data)

    monkeypatch.setattr(run_folder, "write_atomically", write_or_stop)


def _receipt_of_second_shard(path: Path, data: bytes) -> bool:
    # The shard's parquet file is written; the kill lands before its receipt.
    return path.name == "shard-00001.json"


def _half_written_parquet_of_second_shard(path: Path, data: bytes) -> bool:
    # The kill lands while the parquet bytes go to their temporary file: half of them are there.
    if path.name != "shard-00001.parquet":
        return False
    (path.parent / f".{path.name}.killed.tmp").write_bytes(data[: len(data) // 2])
    return True


@pytest.mark.parametrize("stop_when", [_receipt_of_second_shard, _half_written_parquet_of_second_shard])
def test_a_kill_between_or_inside_the_shard_writes_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch,
                                                                                       stop_when):
    from cf_hf.cli import INTERRUPTED_STATUS

    root = tiny_components_dir()
    grid = write_tiny_grid(tmp_path / "grid.yaml")
    killed = tmp_path / "killed"
    args = tiny_cli_args(root, killed, grid, "--shard_size", "1", "--no_export", "--quiet")
    _stop_at(monkeypatch, stop_when)
    assert main(args) == INTERRUPTED_STATUS
    shards = killed / "shards"
    assert (shards / "shard-00000.json").is_file() and not (shards / "shard-00001.json").exists()
    assert main([*args, "--resume"]) == 0
    assert not list(shards.glob(".*.tmp"))  # the temporary file of the interrupted write is gone
    uninterrupted = tmp_path / "uninterrupted"
    assert main(tiny_cli_args(root, uninterrupted, grid, "--shard_size", "1", "--no_export", "--quiet")) == 0
    assert read_run_rows(killed) == read_run_rows(uninterrupted)
