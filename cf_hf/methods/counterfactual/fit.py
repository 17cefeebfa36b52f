"""The counterfactual method fitted from a checkpoint: fine-tuning, then the WiSE-FT sweep, one checkpoint per α."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from cf_hf.methods.checkpoints import MethodCheckpoint


def fit_counterfactual(original: str | Path, output_dir: str | Path, dataset, training_arguments,
                       alphas: Sequence[float]) -> list[MethodCheckpoint]:
    """Counterfactual fine-tuning (`trainer.train`) and its WiSE-FT sweep
    (`cf_hf.interpolation.interpolate_sweep`): one checkpoint per α."""
    from cf_hf.interpolation import alpha_key, alpha_name, interpolate_sweep
    from cf_hf.methods.counterfactual.trainer import train

    start = time.perf_counter()
    output_dir = Path(output_dir)
    training_arguments.output_dir = str(output_dir / "finetuned")
    finetuned = train(str(original), dataset, training_arguments)
    interpolate_sweep(str(original), finetuned, alphas, output_dir / "sweep")
    seconds = time.perf_counter() - start
    return [MethodCheckpoint(name=alpha_key(alpha), method="counterfactual",
                             path=output_dir / "sweep" / alpha_name(alpha), settings={"alpha": float(alpha)},
                             swept="alpha", fit_seconds=seconds)
            for alpha in alphas]
