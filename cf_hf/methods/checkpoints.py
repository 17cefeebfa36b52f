"""What every debiasing method's `fit` returns and writes: `MethodCheckpoint`s, folders that
`cf_hf.evaluation`, `cf-hf compare` and `cf-hf push` read.

Each method's `fit(original, output_dir, ...) -> list[MethodCheckpoint]` is registered in
`cf_hf.methods.registry.METHODS`; a swept setting (CLIP-clip's `keep`, biased prompts' `lambda`, the
counterfactual method's `alpha`) gives one checkpoint per value, which the comparison draws as a curve.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cf_hf.methods.linear import LinearMethod, check_output_folder, load_clip, save_folded


@dataclass
class MethodCheckpoint:
    """One checkpoint a method produced.

    Attributes:
        name: its label in tables and plots (e.g. `clip_clip-keep=64`).
        method: the method (`counterfactual`, `clip_clip`, `biased_prompts`, or `original`).
        path: the checkpoint folder (a plain `CLIPModel` checkpoint).
        settings: the settings that define it; `swept` names the one that varies along the curve.
        fit_seconds: wall time of the fit that produced it, shared by the checkpoints of one sweep.
    """

    name: str
    method: str
    path: Path
    settings: dict[str, Any] = field(default_factory=dict)
    swept: str | None = None
    fit_seconds: float = 0.0

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "method": self.method, "path": str(self.path), "settings": self.settings,
                "swept": self.swept, "fit_seconds": round(self.fit_seconds, 3)}


def save_linear_fits(original: str | Path, fits: Sequence[LinearMethod], output_dir: str | Path,
                     fit_seconds: float) -> list[MethodCheckpoint]:
    """Fold each fit into `original` (loaded once) and save it under `output_dir/<fit name>`; every
    folder is checked before any is written."""
    output_dir = Path(output_dir)
    for fit in fits:
        check_output_folder(output_dir / fit.name)
    loaded = load_clip(original)
    checkpoints = []
    for fit in fits:
        path = save_folded(original, fit, output_dir / fit.name, loaded)
        swept = fit.swept[0] if fit.swept else None
        checkpoints.append(MethodCheckpoint(name=fit.name, method=fit.method, path=path,
                                            settings=dict(fit.settings), swept=swept, fit_seconds=fit_seconds))
    return checkpoints


def embedding_engine(original: str | Path, embedding_config=None):
    from cf_hf.evaluation.embedding import EmbeddingEngine

    return EmbeddingEngine.from_pretrained(original, embedding_config, name=Path(str(original)).name)


