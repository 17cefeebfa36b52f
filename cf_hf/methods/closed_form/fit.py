"""The closed-form projection fitted from a checkpoint: folded plain `CLIPModel` checkpoints, one per weight."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from cf_hf.methods.attribute_prompts import load_attribute_prompts
from cf_hf.methods.checkpoints import MethodCheckpoint, embedding_engine, save_linear_fits
from cf_hf.methods.closed_form.projection import DEFAULT_WEIGHTS, closed_form_maps
from cf_hf.methods.linear import MethodError, attribute_list


def fit_closed_form(original: str | Path, output_dir: str | Path, attribute: str | Sequence[str], weights: Sequence[float] | None = None,
                    prompts_file: str | Path | None = None, values: Sequence[str] | None = None,
                    embedding_config=None) -> list[MethodCheckpoint]:
    """The closed-form projection of `attribute` (label-free: prompts only), one checkpoint per fairness weight.
    Several attributes: removed jointly, the union of their subspaces shrunk by one map.

    Args:
        original: the CLIP checkpoint (folder or Hub id).
        attribute: an attribute of the prompts file, or several.
        output_dir: checkpoints go to `output_dir/closed_form-weight=<w>`.
        weights: fairness weights in (0, 1] (default: 1, 0.9, 0.7).
        prompts_file: the attribute prompts file (default: the shipped `attribute_prompts.yaml`).
        values: the attribute values to use (default: all the file lists); only with one attribute.
    """
    start = time.perf_counter()
    names = attribute_list(attribute, "closed_form")
    if values is not None and len(names) > 1:
        raise MethodError(f"closed_form: values {list(values)} name one attribute's values; with several attributes "
                          f"({names}) every value of the prompts file is used")
    prompts = [load_attribute_prompts(name, prompts_file, values) for name in names]
    engine = embedding_engine(original, embedding_config)
    fits = closed_form_maps(engine.embed_texts, prompts, weights or DEFAULT_WEIGHTS, fitted_on={"model": str(original)})
    return save_linear_fits(original, fits, output_dir, time.perf_counter() - start)
