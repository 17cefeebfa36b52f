"""Pretraining the world's "original CLIP" from scratch on the biased corpus.

The model is a real `transformers` `CLIPModel` (built by `cf_hf.utils.tiny_clip`) with a BPE
`CLIPTokenizer` trained on the world's vocabulary; it is saved with `save_pretrained`, so every
later stage (fine-tuning, interpolation, evaluation, model cards) loads it exactly as it would load
`openai/clip-vit-base-patch32`. A plain training loop is used: the corpus fits in memory as
tensors and the standard CLIP loss (`return_loss=True`) is all that pretraining needs.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cf_hf.utils.tiny_clip import TinyCLIPSpec, build_tiny_clip

from . import vocabulary
from .corpus import SceneSet

# The world's tokenizer, trained once by `write_world_tokenizer` and shipped: BPE training breaks
# ties in a different order from run to run (measured: four trainings on the same texts gave four
# vocabularies), and a different tokenizer pretrains a different "original CLIP".
WORLD_TOKENIZER_DIR = Path(__file__).resolve().parent / "tokenizer"
# CLIP's image normalization (the CLIPImageProcessor defaults).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TOKENIZER_VOCAB_SIZE = 400


def world_clip_spec(image_size: int = 32) -> TinyCLIPSpec:
    """The original CLIP's size (about 0.9M parameters): ViT patch 8, width 128, 4 layers; a
    2-layer text tower of width 64; 64-d projection."""
    return TinyCLIPSpec(
        image_size=image_size,
        patch_size=8,
        vision_width=128,
        vision_layers=4,
        vision_heads=4,
        text_width=64,
        text_layers=2,
        text_heads=4,
        projection_dim=64,
    )


@dataclass
class PretrainConfig:
    """The pretraining schedule (AdamW, linear warm-up then cosine decay)."""

    steps: int = 1300
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 72
    seed: int = 0
    spec: TinyCLIPSpec = field(default_factory=world_clip_spec)


def world_tokenizer():
    """The shipped `CLIPTokenizer` of the world (see `WORLD_TOKENIZER_DIR`)."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(WORLD_TOKENIZER_DIR))


def train_world_tokenizer():
    """A BPE `CLIPTokenizer` trained on every sentence the world writes (`vocabulary_texts`) and a
    sample of corpus captions."""
    from cf_hf.utils.tiny_clip import train_clip_tokenizer

    from .corpus import CorpusConfig, make_corpus

    captions = list(make_corpus(CorpusConfig(size=2000)).captions)
    return train_clip_tokenizer(vocabulary.vocabulary_texts() + captions, vocab_size=TOKENIZER_VOCAB_SIZE)


def write_world_tokenizer(path: str | Path = WORLD_TOKENIZER_DIR) -> Path:
    """Train the world's tokenizer and save it to `path` (`python -m cf_hf.world.pretrain`)."""
    train_world_tokenizer().save_pretrained(str(path))
    return Path(path)


def pixel_values(images: np.ndarray):
    """uint8 (n, H, W, 3) -> normalized float tensor (n, 3, H, W), as `CLIPImageProcessor` makes
    them for images already at the model's size."""
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (tensor - mean) / std


def pretrain_original_clip(
    corpus: SceneSet, config: PretrainConfig | None = None, output_dir=None, log=print,
    stop_after: int | None = None,
):
    """Train a tiny CLIP from scratch on `corpus`; save it (and its processor) to `output_dir` if given.

    `stop_after` stops after that many steps of the same schedule (the check that the shipped
    original is what this code produces replays the first steps).

    Returns:
        (model, processor, history) where history lists {"step", "loss", "logit_scale"} records.
    """
    import torch
    from transformers import get_cosine_schedule_with_warmup

    config = config or PretrainConfig()
    captions = list(corpus.captions)
    model, processor = build_tiny_clip(spec=config.spec, seed=config.seed, tokenizer=world_tokenizer())
    tokens = processor.tokenizer(captions, padding=True, return_tensors="pt")
    images = pixel_values(corpus.images)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    schedule = get_cosine_schedule_with_warmup(optimizer, config.warmup_steps, config.steps)
    generator = torch.Generator().manual_seed(config.seed)
    n_samples = len(captions)
    order = torch.randperm(n_samples, generator=generator)
    position = 0
    history = []
    model.train()
    start = time.perf_counter()
    for step in range(1, (stop_after or config.steps) + 1):
        if position + config.batch_size > n_samples:
            order = torch.randperm(n_samples, generator=generator)
            position = 0
        batch = order[position : position + config.batch_size]
        position += config.batch_size
        output = model(
            input_ids=tokens["input_ids"][batch],
            attention_mask=tokens["attention_mask"][batch],
            pixel_values=images[batch],
            return_loss=True,
        )
        output.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():  # as in CLIP: the temperature may not exceed 100
            model.logit_scale.clamp_(0, math.log(100))
        if step % 100 == 0 or step == config.steps:
            record = {"step": step, "loss": output.loss.item(), "logit_scale": model.logit_scale.exp().item()}
            history.append(record)
            if log is not None:
                log(
                    f"pretrain step {step}/{config.steps}  loss {record['loss']:.3f}  ({time.perf_counter() - start:.0f} s)"
                )
    model.eval()
    if output_dir is not None:
        output_dir = Path(output_dir)
        model.save_pretrained(output_dir)
        processor.save_pretrained(output_dir)
        (output_dir / "world_pretraining.json").write_text(
            __import__("json").dumps({"config": asdict(config), "history": history}, indent=2)
        )
    return model, processor, history


if __name__ == "__main__":
    print(write_world_tokenizer())
