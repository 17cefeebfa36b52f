"""Run by tests/test_training_distributed.py under `accelerate launch --multi_gpu --num_processes 2`,
on the CPU with gloo (`PartialState(cpu=True)`, `use_cpu=True`).

1. Each process computes the model's loss on its half of a fixed batch whose groups all straddle the
   two processes, then backpropagates; the gradients are averaged over processes as DDP would.
   Process 0 saves the loss and the averaged gradients of a few parameters.
2. `train()` runs two steps with the group sampler; every process records the group ids of the
   batches it trains on.

Usage: script.py MODEL_DIR BATCH_PT DATASET_DIR OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from accelerate import PartialState

import cf_hf.methods.counterfactual.sampler
from cf_hf.methods.counterfactual.modeling import CounterfactualCLIPModel
from cf_hf.methods.counterfactual.trainer import CounterfactualTrainingArguments, train
from cf_hf.methods.training_utils import load_training_dataset

CHECKED_PARAMETERS = ("logit_scale", "visual_projection.weight", "text_projection.weight",
                      "vision_model.encoder.layers.0.self_attn.q_proj.weight")


def loss_and_gradients(model_dir: str, batch_path: str, out_dir: Path, rank: int, world_size: int) -> None:
    model = CounterfactualCLIPModel.from_pretrained(model_dir).train()
    batch = torch.load(batch_path)
    share = len(batch["group_ids"]) // world_size
    local = {name: value[rank * share : (rank + 1) * share] for name, value in batch.items()}
    loss = model(**local, return_loss=True).loss
    loss.backward()
    parameters = dict(model.named_parameters())
    gradients = {}
    for name in CHECKED_PARAMETERS:
        gradient = parameters[name].grad.clone()
        dist.all_reduce(gradient)
        gradients[name] = gradient / world_size
    if rank == 0:
        torch.save({"loss": loss.detach(), "gradients": gradients}, out_dir / "loss.pt")


def trainer_batches(model_dir: str, dataset_dir: str, out_dir: Path, rank: int) -> None:
    seen: list[list[str]] = []
    collate = cf_hf.methods.counterfactual.sampler.CounterfactualCollator.__call__

    def recording_collate(self, rows):
        seen.append([row["group_id"] for row in rows])
        return collate(self, rows)

    cf_hf.methods.counterfactual.sampler.CounterfactualCollator.__call__ = recording_collate
    args = CounterfactualTrainingArguments(
        output_dir=str(out_dir / "model"), per_device_train_batch_size=8, group_size=4, max_steps=2,
        save_strategy="no", logging_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
    )
    train(model_dir, load_training_dataset(dataset_dir), args)
    (out_dir / f"batches-{rank}.json").write_text(json.dumps(seen))


def main() -> None:
    model_dir, batch_path, dataset_dir, out_dir = sys.argv[1:]
    state = PartialState(cpu=True)  # joins the gloo process group of the two launched processes
    loss_and_gradients(model_dir, batch_path, Path(out_dir), state.process_index, state.num_processes)
    trainer_batches(model_dir, dataset_dir, Path(out_dir), state.process_index)


if __name__ == "__main__":
    main()
