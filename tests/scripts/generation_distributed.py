"""Run by tests/test_generation_distributed.py as one of two processes (torch.distributed with gloo on
the CPU; RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT come from the test).

Scenarios:
- `uneven TINY_ROOT RUN_DIR OUT_DIR TIMEOUT_S SLOW_S`: process 1 is SLOW_S seconds slower than
  process 0 at its first base image, longer than the process group's TIMEOUT_S. Each process
  writes its report to OUT_DIR/report-<rank>.json.
- `load_error TINY_ROOT RUN_DIR GRID_FILE`: `cf-hf generate` in both processes; process 1 fails to
  load the text-to-image model (its weights file cannot be read). Exits with `main`'s status.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests folder: testing_utils
from accelerate import PartialState
from accelerate.utils import InitProcessGroupKwargs
from testing_utils.generation import tiny_cli_args, tiny_components, tiny_config

WEIGHTS_ERROR = "Error no file named diffusion_pytorch_model.safetensors found in directory {path}/unet."
# Two base images in two shards: one shard per process.
SMALL_RUN = {"captions_per_concept": 1, "decorators_per_caption": 1, "appearances_per_base": 1, "shard_size": 1}


def uneven(root: str, run_dir: str, out_dir: str, timeout_s: str, slow_s: str) -> int:
    from cf_hf.generation import generate
    from cf_hf.generation.base_images import DiffusersTextToImage

    state = PartialState(cpu=True, **InitProcessGroupKwargs(timeout=timedelta(seconds=float(timeout_s))).to_kwargs())
    if state.process_index == 1:
        call = DiffusersTextToImage.__call__
        delay = [float(slow_s)]

        def slow_call(self, requests):
            time.sleep(delay.pop() if delay else 0.0)
            return call(self, requests)

        DiffusersTextToImage.__call__ = slow_call
    report = generate(tiny_config(**SMALL_RUN), **tiny_components(Path(root)), output_dir=run_dir, show_progress=False,
                      distributed=state)  # fmt: skip
    summary = {"complete": report.complete, "shards_generated": report.shards_generated,
               "base_images": report.base_images, "counterfactuals": report.counterfactuals}  # fmt: skip
    (Path(out_dir) / f"report-{state.process_index}.json").write_text(json.dumps(summary))
    return 0


def load_error(root: str, run_dir: str, grid_file: str) -> int:
    from cf_hf.cli import main

    state = PartialState(cpu=True)
    if state.process_index == 1:
        import diffusers

        def unreadable_weights(model_id, *args, **kwargs):
            raise OSError(WEIGHTS_ERROR.format(path=model_id))

        diffusers.AutoPipelineForText2Image.from_pretrained = unreadable_weights
    small_run = [text for name, value in SMALL_RUN.items() for text in (f"--{name}", str(value))]
    return main(tiny_cli_args(Path(root), Path(run_dir), Path(grid_file), "--template_captions", "--no_export", *small_run))


if __name__ == "__main__":
    scenario, *arguments = sys.argv[1:]
    sys.exit({"uneven": uneven, "load_error": load_error}[scenario](*arguments))
