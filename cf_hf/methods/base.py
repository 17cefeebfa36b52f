"""The shared interface of the debiasing methods: fitted from an original CLIP and the data each
needs, a method writes checkpoints that `cf_hf.evaluation`, `cf-hf compare` and `cf-hf push` read.

Each method is a function `fit_<method>(original, output_dir, ...) -> list[MethodCheckpoint]`
registered in `METHODS`; a swept setting (CLIP-clip's `keep`, biased prompts' `lambda`, the
counterfactual method's `alpha`) gives one checkpoint per value, which the comparison draws as a curve.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cf_hf.methods.linear import LinearMethod, MethodError, check_output_folder, load_clip, save_folded


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


def _engine(original: str | Path, embedding_config=None):
    from cf_hf.evaluation.embedding import EmbeddingEngine

    return EmbeddingEngine.from_pretrained(original, embedding_config, name=Path(str(original)).name)


def fit_clip_clip(original: str | Path, output_dir: str | Path, gallery, attribute: str | Sequence[str],
                  keep: Sequence[int], seed: int = 0, embedding_config=None) -> list[MethodCheckpoint]:
    """CLIP-clip fitted on an attribute-labelled gallery (`cf_hf.evaluation.AttributeGallery`,
    e.g. FairFace train): one checkpoint per number of kept dimensions. Several attributes: the
    dimensions are ranked by their information summed over them."""
    from cf_hf.methods import clip_clip

    attributes = [attribute] if isinstance(attribute, str) else list(attribute)
    missing = [name for name in attributes if name not in gallery.attributes]
    if missing or not attributes:
        raise MethodError(f"clip_clip: the gallery {gallery.name!r} has no attribute {', '.join(map(repr, missing))}; "
                          f"it has {sorted(gallery.attributes)}")
    start = time.perf_counter()
    engine = _engine(original, embedding_config)
    embeddings = engine.embed_images(gallery.images, gallery.fingerprint)
    fits = clip_clip.fit_clip_clip(embeddings, {name: gallery.attributes[name] for name in attributes}, keep,
                                   seed=seed, fitted_on={"gallery": gallery.name, "source": gallery.source,
                                                         "model": str(original)})
    return save_linear_fits(original, fits, output_dir, time.perf_counter() - start)


def fit_biased_prompts(original: str | Path, output_dir: str | Path, attribute: str | Sequence[str], concepts: Sequence[str],
                       lambdas: Sequence[float] | None = None, prompts_file: str | Path | None = None,
                       values: Sequence[str] | None = None, embedding_config=None) -> list[MethodCheckpoint]:
    """Biased prompts for `attribute`, calibrated on pairs naming `concepts`: one checkpoint per λ."""
    from cf_hf.methods import biased_prompts

    start = time.perf_counter()
    prompts = biased_prompts.load_biased_prompts(attribute, concepts, prompts_file, values)
    engine = _engine(original, embedding_config)
    fits = biased_prompts.fit_biased_prompts(
        engine.embed_texts, prompts, lambdas or (biased_prompts.DEFAULT_LAMBDA,),
        fitted_on={"prompts_file": Path(prompts_file).name if prompts_file else "biased_prompts.yaml (shipped)",
                   "concepts": list(concepts), "model": str(original)})
    return save_linear_fits(original, fits, output_dir, time.perf_counter() - start)


def fit_counterfactual(original: str | Path, output_dir: str | Path, dataset, training_arguments,
                       alphas: Sequence[float]) -> list[MethodCheckpoint]:
    """Counterfactual fine-tuning (`cf_hf.training.train`) and its WiSE-FT sweep
    (`cf_hf.interpolation.interpolate_sweep`): one checkpoint per α."""
    from cf_hf.evaluation.results import alpha_key
    from cf_hf.interpolation import alpha_name, interpolate_sweep
    from cf_hf.training import train

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


def fit_bias_alignment(original: str | Path, output_dir: str | Path, gallery, attribute: str | Sequence[str],
                       **options) -> list[MethodCheckpoint]:
    """The bias-alignment module (CVPR 2025) trained on an attribute-labelled gallery: one checkpoint
    per variant (`cf_hf.methods.bias_alignment_training.fit_bias_alignment`, whose options pass through)."""
    from cf_hf.methods.bias_alignment_training import fit_bias_alignment as fit

    return fit(original, output_dir, gallery, attribute, **options)


# method name -> the function that fits it and writes its checkpoints.
METHODS = {
    "counterfactual": fit_counterfactual,
    "clip_clip": fit_clip_clip,
    "biased_prompts": fit_biased_prompts,
    "bias_alignment": fit_bias_alignment,
}
