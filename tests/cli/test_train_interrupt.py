"""Ctrl-C in a real `cf-hf train` process: one line, the shell's status for an interrupt, no traceback, no
half-written checkpoint, and `--resume_from_checkpoint last` finishes the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from testing_utils.training import make_counterfactual_dataset

from cf_hf.cli import INTERRUPTED_STATUS
from cf_hf.methods.training_utils import incomplete_checkpoint, latest_complete_checkpoint

REPOSITORY = Path(__file__).resolve().parents[2]
MAX_STEPS = 60  # enough that the run is still training when its first checkpoint is complete
SAVE_STEPS = 2
DEADLINE_SECONDS = 300


def _train_command(model_dir: Path, dataset_dir: Path, output_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cf_hf.cli", "train", "--model_name_or_path", str(model_dir),
            "--dataset", str(dataset_dir), "--output_dir", str(output_dir), "--per_device_train_batch_size", "8",
            "--group_size", "4", "--max_steps", str(MAX_STEPS), "--learning_rate", "1e-3", "--save_strategy",
            "steps", "--save_steps", str(SAVE_STEPS), "--use_cpu", "--report_to", "none", "--logging_strategy",
            "no", "--seed", "0", "--quiet", *extra]


@pytest.mark.slow
def test_ctrl_c_in_a_real_training_run_stops_cleanly_and_resumes(tiny_clip_dir, tmp_path):
    make_counterfactual_dataset(num_groups=8, members=4).save_to_disk(tmp_path / "dataset")
    output_dir = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = _train_command(tiny_clip_dir, tmp_path / "dataset", output_dir)
    stderr_path = tmp_path / "stderr.txt"
    with stderr_path.open("wb") as stderr:
        # Ctrl-C handled as in a terminal, even where this test process inherited it ignored (a
        # shell's background job).
        process = subprocess.Popen(command, cwd=REPOSITORY, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + DEADLINE_SECONDS
        while process.poll() is None and time.monotonic() < deadline:
            if latest_complete_checkpoint(output_dir) is not None:  # a sign of progress: a whole checkpoint
                break
            time.sleep(0.02)
        assert process.poll() is None, "the run ended before it could be interrupted: raise MAX_STEPS"
        before_interrupt = stderr_path.stat().st_size
        process.send_signal(signal.SIGINT)
        status = process.wait(timeout=120)
    err = stderr_path.read_bytes().decode("utf-8", errors="replace")
    after = err[before_interrupt:] if len(err.encode()) == len(err) else err.encode()[before_interrupt:].decode()
    assert status == INTERRUPTED_STATUS, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert after.count("\n") == 1 and after.startswith("cf-hf train: interrupted: "), after
    assert "--resume_from_checkpoint last" in after
    checkpoints = sorted(output_dir.glob("checkpoint-*"))
    assert checkpoints and all(incomplete_checkpoint(folder) is None for folder in checkpoints), checkpoints
    assert not (output_dir / "model.safetensors").exists()  # the final model was not written

    resumed = subprocess.run([*command, "--resume_from_checkpoint", "last"], cwd=REPOSITORY, env=env,
                             capture_output=True, text=True, timeout=DEADLINE_SECONDS)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (output_dir / "model.safetensors").is_file()
    assert (output_dir / f"checkpoint-{MAX_STEPS}").is_dir()
