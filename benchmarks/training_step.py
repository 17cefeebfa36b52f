"""Time one training step of `CounterfactualCLIPModel` (CLIP + counterfactual loss) against plain
`CLIPModel` (CLIP loss), on the same model weights and the same batch, on the CPU.

Two models in one run: the tiny test CLIP and a randomly initialised ViT-B/32-shaped CLIP
(openai/clip-vit-base-patch32's sizes). A step is forward + backward + AdamW update; the two variants
alternate step by step so that machine load affects both alike, and the table reports medians.
The last column times the losses alone on the batch's embeddings: what the counterfactual term adds.

    python benchmarks/training_step.py                 # both models, batch 64
    python benchmarks/training_step.py --steps 5 --models vit-b32 --threads 1 --clock cpu

Goal: the counterfactual loss adds at most 5% to the step.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPModel

from cf_hf.methods.counterfactual.losses import clip_loss, counterfactual_clip_loss
from cf_hf.methods.counterfactual.modeling import CounterfactualCLIPModel

CAPTION_LENGTH = 20  # tokens of a typical caption, end-of-text included
EOS_TOKEN_ID = 2
MODEL_SIZES = {
    "tiny": {
        "text_config": {"vocab_size": 512, "hidden_size": 32, "intermediate_size": 128, "num_hidden_layers": 2,
                        "num_attention_heads": 2, "max_position_embeddings": 77},
        "vision_config": {"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 128,
                          "num_hidden_layers": 2, "num_attention_heads": 2},
        "projection_dim": 16,
    },
    "vit-b32": {
        "text_config": {"vocab_size": 49408, "hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12,
                        "num_attention_heads": 8, "max_position_embeddings": 77},
        "vision_config": {"image_size": 224, "patch_size": 32, "hidden_size": 768, "intermediate_size": 3072,
                          "num_hidden_layers": 12, "num_attention_heads": 12},
        "projection_dim": 512,
    },
}


def build(size: str) -> tuple[CLIPModel, CounterfactualCLIPModel]:
    """The plain and the counterfactual model of one size, with identical random weights."""
    sizes = MODEL_SIZES[size]
    text_config = sizes["text_config"] | {"eos_token_id": EOS_TOKEN_ID, "bos_token_id": 1, "pad_token_id": 0,
                                          "projection_dim": sizes["projection_dim"]}
    vision_config = sizes["vision_config"] | {"projection_dim": sizes["projection_dim"]}
    config = CLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=sizes["projection_dim"])
    torch.manual_seed(0)
    plain = CLIPModel(config)
    counterfactual = CounterfactualCLIPModel(config)
    counterfactual.load_state_dict(plain.state_dict())
    return plain.train(), counterfactual.train()


def make_batch(config: CLIPConfig, batch_size: int, group_size: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    groups = batch_size // group_size
    # Members of a group share their caption, as in a counterfactual dataset.
    captions = torch.randint(3, config.text_config.vocab_size, (groups, CAPTION_LENGTH), generator=generator)
    captions[:, -1] = EOS_TOKEN_ID
    group_ids = torch.arange(groups).repeat_interleave(group_size)
    image_size = config.vision_config.image_size
    return {
        "input_ids": captions[group_ids],
        "pixel_values": torch.randn(batch_size, 3, image_size, image_size, generator=generator),
        "group_ids": group_ids,
    }


# "wall": elapsed time. "cpu": CPU time of this process, which waiting for a busy machine's cores
# does not inflate (use it with --threads 1, where no thread spins waiting for another).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def step(model, optimizer, batch, with_groups: bool, clock=time.perf_counter) -> float:
    inputs = {name: value for name, value in batch.items() if with_groups or name != "group_ids"}
    start = clock()
    loss = model(**inputs, return_loss=True).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return clock() - start


def loss_only_times(
    batch_size: int, dim: int, group_size: int, clock=time.perf_counter, repeats: int = 50
) -> tuple[float, float]:
    """Median seconds of (CLIP loss, CLIP + counterfactual loss) forward + backward on embeddings."""
    generator = torch.Generator().manual_seed(1)
    group_ids = torch.arange(batch_size // group_size).repeat_interleave(group_size)
    times = {"clip": [], "both": []}
    for _ in range(repeats):
        for variant in times:
            image = F.normalize(torch.randn(batch_size, dim, generator=generator), dim=1).requires_grad_()
            text = F.normalize(torch.randn(batch_size, dim, generator=generator), dim=1).requires_grad_()
            start = clock()
            if variant == "clip":
                loss = clip_loss(image, text, 14.3)
            else:
                loss = counterfactual_clip_loss(image, text, 14.3, group_ids).loss
            loss.backward()
            times[variant].append(clock() - start)
    return statistics.median(times["clip"]), statistics.median(times["both"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODEL_SIZES), choices=list(MODEL_SIZES))
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--group_size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant (after one warm-up)")
    parser.add_argument("--tiny_steps", type=int, default=20, help="timed steps for the tiny model (cheap)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall", help="what a step's time is")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = CLOCKS[args.clock]

    rows = []
    for size in args.models:
        plain, counterfactual = build(size)
        batch = make_batch(plain.config, args.batch_size, args.group_size)
        variants = {
            "clip": (plain, torch.optim.AdamW(plain.parameters(), lr=1e-6), False),
            "cf": (counterfactual, torch.optim.AdamW(counterfactual.parameters(), lr=1e-6), True),
        }
        times = {name: [] for name in variants}
        steps = args.tiny_steps if size == "tiny" else args.steps
        for index in range(steps + 1):
            for name, (model, optimizer, with_groups) in variants.items():
                elapsed = step(model, optimizer, batch, with_groups, clock)
                if index > 0:  # the first step warms up allocations and the optimizer state
                    times[name].append(elapsed)
        plain_s, cf_s = statistics.median(times["clip"]), statistics.median(times["cf"])
        loss_clip_s, loss_both_s = loss_only_times(
            args.batch_size, plain.config.projection_dim, args.group_size, clock
        )
        rows.append((size, plain_s, cf_s, loss_both_s - loss_clip_s))
        print(f"{size}: CLIPModel {[round(t * 1e3) for t in times['clip']]} ms, "
              f"CounterfactualCLIPModel {[round(t * 1e3) for t in times['cf']]} ms", flush=True)

    print(f"\nbatch {args.batch_size} ({args.batch_size // args.group_size} groups x {args.group_size}), "
          f"CPU, {torch.get_num_threads()} threads, {args.clock} clock, median of {args.tiny_steps} (tiny) / {args.steps} steps\n")
    print("| model   | CLIPModel step (ms) | CounterfactualCLIPModel step (ms) | ratio | CF loss alone adds (ms) |")
    print("|---------|--------------------:|----------------------------------:|------:|------------------------:|")
    for size, plain_s, cf_s, added_s in rows:
        print(f"| {size:<7} | {plain_s * 1e3:19.1f} | {cf_s * 1e3:33.1f} | {cf_s / plain_s:5.3f} | "
              f"{added_s * 1e3:23.3f} |")


if __name__ == "__main__":
    main()
