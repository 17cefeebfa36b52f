"""The closed-form projection fitted from a checkpoint: folded plain `CLIPModel` checkpoints, one per weight."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from cf_hf.methods.attribute_prompts import load_attribute_prompts
from cf_hf.methods.checkpoints import MethodCheckpoint, embedding_engine, save_linear_fits
from cf_hf.methods.closed_form.projection import DEFAULT_WEIGHTS, closed_form_maps


def fit_closed_form(original: str | Path, output_dir: str | Path, attribute: str, weights: Sequence[float] | None = None,
                    prompts_file: str | Path | None = None, values: Sequence[str] | None = None,
                    embedding_config=None) -> list[MethodCheckpoint]:
    """The closed-form projection of `attribute` (label-free: prompts only), one checkpoint per fairness weight.

    Args:
        original: the CLIP checkpoint (folder or Hub id).
        output_dir: checkpoints go to `output_dir/closed_form-weight=<w>`.
        weights: fairness weights in (0, 1] (default: 1, 0.9, 0.7).
        prompts_file: the attribute prompts file (default: the shipped `attribute_prompts.yaml`).
        values: the attribute values to use (default: all the file lists).
    """
    start = time.perf_counter()
    prompts = load_attribute_prompts(attribute, prompts_file, values)
    engine = embedding_engine(original, embedding_config)
    fits = closed_form_maps(engine.embed_texts, prompts, weights or DEFAULT_WEIGHTS, fitted_on={"model": str(original)})
    return save_linear_fits(original, fits, output_dir, time.perf_counter() - start)
