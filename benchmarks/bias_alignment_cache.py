"""Time one training epoch of the bias-alignment module with CLIP's embeddings cached against
re-encoding every image and caption at every step, on the same rows and with the same Trainer.

The rows are the world's labelled people (the professions world's FairFace "train" draw, 64 per cell
of its 16 attribute cells: 1,024 images) captioned from their labels, and the CLIP is the world's
shipped original. Cached: the embeddings are computed once through the evaluation harness's
`EmbeddingEngine` (the table reports that one-off cost apart) and every epoch steps over them
(`BiasAlignmentData`). Re-encoding: the same rows as pixels and tokens (`EncodedBiasAlignmentData`),
CLIP encoding them under `torch.no_grad` at every step. Both run `BiasAlignmentTrainer` for whole
epochs; the table reports the median epoch.

    python benchmarks/bias_alignment_cache.py
    python benchmarks/bias_alignment_cache.py --epochs 3 --per_cell 32 --threads 1

Goal: the cached epoch is at least 20x faster at the world's scale.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _epoch_seconds(original: Path, data, output_dir: Path, batch_size: int, epochs: int,
                   queue_size: int) -> list[float]:
    """Seconds of each of `epochs` training epochs (a Trainer callback stamps epoch ends)."""
    from transformers import TrainerCallback

    from cf_hf.methods.bias_alignment.trainer import (
        BiasAlignmentArguments,
        BiasAlignmentTrainer,
        DrawEpochCallback,
        bias_aligned_from,
    )

    stamps: list[float] = []

    class Stamp(TrainerCallback):
        def on_epoch_begin(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

        def on_epoch_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    args = BiasAlignmentArguments(output_dir=str(output_dir), num_train_epochs=epochs,
                                  per_device_train_batch_size=batch_size, queue_size=queue_size, learning_rate=1e-3,
                                  save_strategy="no", use_cpu=True, disable_tqdm=True, report_to="none", logging_steps=10**6,
                                  eval_strategy="no", early_stopping_patience=0)
    model, _ = bias_aligned_from(original, args)
    collator = data.collate
    trainer = BiasAlignmentTrainer(model=model, args=args, train_dataset=data, data_collator=collator,
                                   callbacks=[Stamp(), DrawEpochCallback(data)])
    trainer.train()
    return [end - begin for begin, end in zip(stamps[::2], stamps[1::2])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per_cell", type=int, default=64, help="labelled people per attribute cell (16 cells)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per variant")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--queue_size", type=int, default=None,
                        help="the loss queues' length; unset: the demo's (one epoch of the world's labelled people)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from cf_hf.evaluation.embedding import EmbeddingConfig, EmbeddingEngine
    from cf_hf.methods.bias_alignment.captions import CaptionSetting, caption_rows
    from cf_hf.methods.bias_alignment.rows import EncodedBiasAlignmentData, gallery_data
    from cf_hf.world import galleries
    from cf_hf.world.corpus import ATTRIBUTES
    from cf_hf.world.demo.config import METHOD_FIT_SEED, DemoConfig
    from cf_hf.world.demo.stages import BIAS_ALIGNMENT_TEMPLATE
    from cf_hf.world.original import ORIGINAL_DIR

    gallery = galleries.attribute_gallery(galleries.fairface(args.per_cell, seed=METHOD_FIT_SEED), name="world_fairface_train")
    with tempfile.TemporaryDirectory() as folder:
        engine = EmbeddingEngine.from_pretrained(ORIGINAL_DIR, EmbeddingConfig(batch_size=256, progress=False,
                                                                               cache_dir=str(Path(folder) / "cache")))
        start = time.perf_counter()
        setting = CaptionSetting.custom(list(ATTRIBUTES), BIAS_ALIGNMENT_TEMPLATE)
        cached = gallery_data(engine, gallery, setting)
        embedding_seconds = time.perf_counter() - start
        encoded = EncodedBiasAlignmentData(gallery.images, caption_rows(gallery.attributes, setting), engine.processor)
        queue_size = args.queue_size or DemoConfig().bias_alignment_queue_size
        cached_epochs = _epoch_seconds(ORIGINAL_DIR, cached, Path(folder) / "cached", args.batch_size, args.epochs,
                                       queue_size)
        encoded_epochs = _epoch_seconds(ORIGINAL_DIR, encoded, Path(folder) / "encoded", args.batch_size, args.epochs,
                                        queue_size)
    cached_s, encoded_s = statistics.median(cached_epochs), statistics.median(encoded_epochs)
    print(f"{len(cached)} rows, batch {args.batch_size}, queue {queue_size}, {args.epochs} epochs each, "
          f"threads {torch.get_num_threads()}")
    print(f"epochs (s): cached {[round(t, 3) for t in cached_epochs]}, re-encoding {[round(t, 2) for t in encoded_epochs]}")
    print("| variant | epoch (s, median) | speed-up |")
    print("|---|---:|---:|")
    print(f"| re-encoding every step | {encoded_s:.2f} | 1.0x |")
    print(f"| cached embeddings | {cached_s:.3f} | {encoded_s / cached_s:.0f}x |")
    print(f"| (once: embedding the rows for the cache) | {embedding_seconds:.2f} | |")


if __name__ == "__main__":
    main()
