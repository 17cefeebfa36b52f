"""The bias-alignment module fitted from a checkpoint and an attribute-labelled gallery: one checkpoint per variant."""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from cf_hf.methods.bias_alignment.captions import caption_setting
from cf_hf.methods.bias_alignment.rows import BiasAlignmentData, counterfactual_data, gallery_data
from cf_hf.methods.bias_alignment.trainer import BiasAlignmentArguments, train_bias_alignment
from cf_hf.methods.checkpoints import MethodCheckpoint, embedding_engine
from cf_hf.methods.linear import MethodError

# The variants the comparison trains: name -> (α, image counterfactuals). The paper's model, the
# model with cf_hf's image counterfactuals, and the paper's two ablations.
VARIANTS = {
    "bias_alignment": (None, False),
    "bias_alignment_image_cf": (None, True),
    "bias_alignment_ba_only": (0.0, False),
    "bias_alignment_cd_only": (1.0, False),
}


def fit_bias_alignment(original: str | Path, output_dir: str | Path, gallery, attribute: str | Sequence[str],
                       training_arguments: BiasAlignmentArguments | None = None, template: str | None = None,
                       words: Mapping[str, Mapping[str, str]] | None = None, counterfactual_dataset=None,
                       variants: Sequence[str] = ("bias_alignment",), embedding_config=None) -> list:
    """The BA module trained on an attribute-labelled gallery (e.g. FairFace train): one checkpoint
    per variant in `VARIANTS` (`bias_alignment_image_cf` needs `counterfactual_dataset`, cf_hf's
    counterfactual dataset or its folder). Checkpoints are named `<variant>-alpha=<α>`.

    Captions: unset `template`, the authors' for `attribute` (`captions.yaml`: gender, age, race, or
    the three), `words` overriding their words; else `template` (caption and counterfactual) with `words`."""
    attributes = [attribute] if isinstance(attribute, str) else list(attribute)
    unknown = [name for name in variants if name not in VARIANTS]
    if unknown:
        raise MethodError(f"unknown bias-alignment variant(s) {unknown}: choose from {list(VARIANTS)}")
    if any(VARIANTS[name][1] for name in variants) and counterfactual_dataset is None:
        raise MethodError("bias_alignment_image_cf needs the counterfactual dataset (image counterfactuals)")
    base = training_arguments or BiasAlignmentArguments(output_dir=str(output_dir))
    output_dir = Path(output_dir)
    start = time.perf_counter()
    engine = embedding_engine(original, embedding_config)
    setting = caption_setting(attributes, template, words)
    data = gallery_data(engine, gallery, setting, seed=base.seed)
    image_data = None
    if any(VARIANTS[name][1] for name in variants):
        image_data = BiasAlignmentData.concatenate([data, counterfactual_data(engine, counterfactual_dataset,
                                                                              seed=base.seed)])
    embedding_seconds = time.perf_counter() - start
    checkpoints = []
    for name in variants:
        started = time.perf_counter()
        alpha, image_counterfactuals = VARIANTS[name]
        alpha = base.alpha if alpha is None else alpha
        checkpoint_name = f"{name}-alpha={alpha:g}"
        args = copy.deepcopy(base)  # the same settings; α in [0, 1] (checked by `base` or fixed)
        args.output_dir, args.alpha = str(output_dir / checkpoint_name), alpha
        rows = image_data if image_counterfactuals else data
        record = {"variant": name, "attributes": attributes, "captions": setting.record(), "gallery": gallery.name,
                  "rows": len(rows), "image_counterfactual_rows": rows.image_counterfactual_rows}
        path = train_bias_alignment(original, rows, args, record)
        checkpoints.append(MethodCheckpoint(
            name=checkpoint_name, method="bias_alignment", path=path,
            settings={"variant": name, "alpha": alpha, "attribute": "+".join(attributes),
                      "image_counterfactuals": image_counterfactuals},
            swept=None, fit_seconds=embedding_seconds + time.perf_counter() - started))
    return checkpoints
