"""`generate` in two processes (torch.distributed, gloo on the CPU): uneven shares finish without a
collective barrier that times out, and a model-load error in one process stops both with it.

The processes are started directly with torch.distributed's environment variables (as a cluster
scheduler does), not through a launcher that would kill the survivors when one process exits: a
process that waits forever then fails the test by its timeout.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from scripts.generation_distributed import SMALL_RUN
from testing_utils import TESTS
from testing_utils.generation import tiny_components_dir, tiny_config, write_tiny_grid

from cf_hf.generation.run_folder import RunFolder

pytestmark = pytest.mark.slow  # starts several processes, a server or the demo

SCRIPT = TESTS / "scripts" / "generation_distributed.py"
WORLD_SIZE = 2
# A hang shows as a timeout; a healthy run of the tiny models takes well under a minute per process.
TEST_TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_processes(*arguments: str) -> list[subprocess.CompletedProcess]:
    port = str(_free_port())
    processes = []
    for rank in range(WORLD_SIZE):
        environment = os.environ | {
            "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(WORLD_SIZE),
            "LOCAL_WORLD_SIZE": str(WORLD_SIZE), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port,
            "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
        }  # fmt: skip
        processes.append(subprocess.Popen(
            [sys.executable, str(SCRIPT), *arguments], env=environment, cwd=TESTS,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))  # fmt: skip
    results = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=TEST_TIMEOUT_S)
            results.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    finally:
        for process in processes:
            process.kill()
    return results


def test_uneven_shares_finish_without_waiting_in_a_collective(tmp_path):
    """Process 1 is 12 s slower than process 0 while the process group times out after 5 s: a
    barrier there would fail process 0; polling the run folder waits for as long as it takes. (The
    timeout leaves room for the processes' start-up on a busy machine; the delay is over twice it.)"""
    results = _run_processes("uneven", str(tiny_components_dir()), str(tmp_path / "run"), str(tmp_path), "5", "12")
    assert [result.returncode for result in results] == [0, 0], [result.stderr[-3000:] for result in results]
    reports = [json.loads((tmp_path / f"report-{rank}.json").read_text()) for rank in range(WORLD_SIZE)]
    assert [report["shards_generated"] for report in reports] == [1, 1]
    assert all(report["complete"] for report in reports)
    assert reports[0]["base_images"] == reports[1]["base_images"] > 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["complete"] and len(manifest["shards"]) == tiny_config(**SMALL_RUN).num_shards == 2
    assert {record["status"] for record in RunFolder(tmp_path / "run").process_records().values()} == {"done"}


def test_a_model_load_error_in_one_process_stops_every_process_with_it(tmp_path):
    root = tiny_components_dir()
    grid = write_tiny_grid(tmp_path / "grid.yaml")
    results = _run_processes("load_error", str(root), str(tmp_path / "run"), str(grid))
    reason = f"cannot load text-to-image model '{root / 'text_to_image'}': Error no file named"
    for rank, result in enumerate(results):
        assert result.returncode == 2, (rank, result.stderr[-3000:])
        assert reason in result.stderr, (rank, result.stderr[-3000:])
    assert "(set with --text_to_image_model)" in results[1].stderr
    assert "process 1 failed: ModelLoadError" in results[0].stderr
    records = RunFolder(tmp_path / "run").process_records()
    assert records[1]["status"] == "failed" and records[0]["status"] == "stopped"
