"""Two processes (`accelerate launch`, gloo on the CPU) against one process.

`accelerate launch --cpu --num_processes 2` starts a single process in accelerate 1.15 (several CPU
processes go through mpirun with a hostfile), so the test launches with `--multi_gpu` (torchrun),
and the script asks for the CPU itself (`PartialState(cpu=True)`, `use_cpu=True`): gloo, no GPU.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter

import pytest
import torch
from testing_utils import TESTS
from testing_utils.training import make_counterfactual_dataset
from transformers import CLIPModel, CLIPProcessor

from cf_hf.methods.counterfactual.modeling import CounterfactualCLIPModel

pytestmark = pytest.mark.slow  # starts several processes, a server or the demo

SCRIPT = TESTS / "scripts" / "training_distributed.py"
# Group ids of the fixed batch: every group has one member in each half, i.e. in each process.
GROUP_IDS = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
NUM_GROUPS, GROUP_SIZE = 8, 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_match_one_process_and_keep_groups_whole(tiny_clip_dir, tmp_path):
    processor = CLIPProcessor.from_pretrained(tiny_clip_dir)
    captions = ["a doctor", "a nurse at work", "a chef", "a firefighter near a truck"]
    text = processor.tokenizer([captions[group] for group in GROUP_IDS], padding=True, return_tensors="pt")
    batch = {
        "input_ids": text["input_ids"],
        "attention_mask": text["attention_mask"],
        "pixel_values": torch.randn(len(GROUP_IDS), 3, 32, 32, generator=torch.Generator().manual_seed(0)),
        "group_ids": GROUP_IDS,
    }
    torch.save(batch, tmp_path / "batch.pt")
    make_counterfactual_dataset(num_groups=NUM_GROUPS, members=GROUP_SIZE).save_to_disk(tmp_path / "dataset")

    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()),
        str(SCRIPT), str(tiny_clip_dir), str(tmp_path / "batch.pt"), str(tmp_path / "dataset"), str(tmp_path),
    ]
    environment = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    subprocess.run(command, check=True, env=environment, cwd=TESTS, timeout=300)

    # Loss and (DDP-averaged) gradients equal one process's on the concatenated batch.
    distributed = torch.load(tmp_path / "loss.pt")
    model = CounterfactualCLIPModel.from_pretrained(tiny_clip_dir).train()
    loss = model(**batch, return_loss=True).loss
    loss.backward()
    assert abs(distributed["loss"].item() - loss.item()) < 1e-5
    parameters = dict(model.named_parameters())
    for name, gradient in distributed["gradients"].items():
        torch.testing.assert_close(gradient, parameters[name].grad, atol=1e-5, rtol=1e-4)

    # Under the Trainer, each process trains on whole groups, and the two together cover them all.
    batches = [json.loads((tmp_path / f"batches-{rank}.json").read_text()) for rank in range(2)]
    assert len(batches[0]) == len(batches[1]) == 2
    for step_batches in zip(*batches):
        assert all(len(rows) == 8 for rows in step_batches)
        for rows in step_batches:
            assert all(count == GROUP_SIZE for count in Counter(rows).values())
        assert not set(step_batches[0]) & set(step_batches[1])
    assert {group for rank_batches in batches for rows in rank_batches for group in rows} == {
        f"scene-{group}" for group in range(NUM_GROUPS)
    }
    CLIPModel.from_pretrained(tmp_path / "model")
