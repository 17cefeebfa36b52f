"""Biased prompts fitted from a checkpoint: folded checkpoints, one per λ."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from cf_hf.methods.biased_prompts.projection import DEFAULT_LAMBDA, biased_prompts_maps, load_biased_prompts
from cf_hf.methods.checkpoints import MethodCheckpoint, embedding_engine, save_linear_fits


def fit_biased_prompts(original: str | Path, output_dir: str | Path, attribute: str | Sequence[str],
                       evaluated_concepts: Sequence[str], lambdas: Sequence[float] | None = None,
                       prompts_file: str | Path | None = None, values: Sequence[str] | None = None,
                       embedding_config=None, calibration_concepts: Sequence[str] | None = None) -> list[MethodCheckpoint]:
    """Biased prompts for `attribute`: one checkpoint per λ.

    The calibration pairs name the prompts file's `calibration_concepts` (or `calibration_concepts`)
    less `evaluated_concepts`, the concepts the checkpoints will be scored on: calibration and
    evaluation concepts are disjoint, and the record lists both."""
    start = time.perf_counter()
    prompts = load_biased_prompts(attribute, evaluated_concepts, prompts_file, values, calibration_concepts)
    engine = embedding_engine(original, embedding_config)
    fits = biased_prompts_maps(
        engine.embed_texts, prompts, lambdas or (DEFAULT_LAMBDA,),
        fitted_on={"prompts_file": Path(prompts_file).name if prompts_file else "biased_prompts.yaml (shipped)",
                   "evaluated_concepts": list(evaluated_concepts), "model": str(original)})
    return save_linear_fits(original, fits, output_dir, time.perf_counter() - start)
