"""Debiasing methods that are a linear map of CLIP's embeddings, folded into a plain `CLIPModel`.

CLIP's image embedding is `visual_projection(pooled)` and its text embedding
`text_projection(pooled)`; both projections are bias-free `nn.Linear` layers. A method that maps an
embedding `e` to `A e` (CLIP-clip's kept-dimension mask, biased prompts' projection) therefore
equals a checkpoint whose projection weight is `A @ W`. Every consumer normalizes embeddings before
taking cosine similarities, and normalization commutes with the fold (`A (e / |e|)` and `A e` have
the same direction), so the folded checkpoint gives exactly the method's similarities and loads
with `CLIPModel.from_pretrained`, no cf_hf needed.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# The config field in which a folded checkpoint records the method, its settings and its data.
METHOD_CONFIG_FIELD = "cf_hf_method"


class MethodError(ValueError):
    """A debiasing method was given data or settings it cannot fit."""


def attribute_list(attribute, method: str) -> list[str]:
    """The attribute(s) a method is asked to remove, as a list: one name or several (removed jointly);
    a clear error naming the problem for none, a non-name, or an attribute given twice."""
    names = [attribute] if isinstance(attribute, str) else list(attribute or [])
    bad = [name for name in names if not isinstance(name, str) or not name]
    if not names or bad:
        raise MethodError(f"{method}: name the attribute(s) to remove (got {attribute!r})")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise MethodError(f"{method}: attribute {', '.join(map(repr, repeated))} is given twice (got {names})")
    return names


def attribute_settings(names: list[str]) -> dict:
    """How a fit records the attributes it removes: `attribute` for one (as every single-attribute
    checkpoint always has), `attributes` for several."""
    return {"attribute": names[0]} if len(names) == 1 else {"attributes": list(names)}


class NamedFit:
    """What every fitted map shares: its name from the swept settings, and its record. Subclasses are
    dataclasses with `method`, `settings`, `fitted_on` and `swept` fields."""

    @property
    def name(self) -> str:
        """A short name of this fit, e.g. `clip_clip-keep=64`: folder and table label."""
        shown = {key: value for key, value in self.settings.items() if key in self.swept}
        return self.method + "".join(f"-{key}={value:g}" if isinstance(value, float) else f"-{key}={value}"
                                     for key, value in shown.items())

    def record(self) -> dict[str, Any]:
        """What the checkpoint's config and card record about this fit (JSON-serializable)."""
        return json.loads(json.dumps({"method": self.method, "name": self.name, "settings": self.settings,
                                      "fitted_on": self.fitted_on}, default=str))


@dataclass
class LinearMethod(NamedFit):
    """A fitted linear debiasing method: optional (d, d) maps of the image and text embeddings.

    Attributes:
        method: the method's name (`clip_clip`, `biased_prompts`).
        settings: every setting that defines the fit (e.g. `{"keep": 64, "attribute": "gender"}`).
        fitted_on: what the fit used (data set, sizes, model), recorded in the checkpoint.
        image_map: (d, d) matrix applied to image embeddings, or None (unchanged).
        text_map: (d, d) matrix applied to text embeddings, or None (unchanged).
    """

    method: str
    settings: dict[str, Any]
    fitted_on: dict[str, Any] = field(default_factory=dict)
    image_map: np.ndarray | None = None
    text_map: np.ndarray | None = None
    # The settings that vary within a sweep: they name the fit.
    swept: tuple[str, ...] = ()

    def apply(self, embeddings: np.ndarray, tower: str) -> np.ndarray:
        """The method applied to (n, d) embeddings of `tower` ("image" or "text"), renormalized."""
        matrix = {"image": self.image_map, "text": self.text_map}[tower]
        embeddings = np.asarray(embeddings, dtype=np.float64)
        mapped = embeddings if matrix is None else embeddings @ np.asarray(matrix, dtype=np.float64).T
        norms = np.linalg.norm(mapped, axis=1, keepdims=True)
        return mapped / np.where(norms == 0, 1.0, norms)


def _check_map(matrix: np.ndarray, weight, tower: str) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float64)
    dimension = weight.shape[0]
    if matrix.shape != (dimension, dimension):
        raise MethodError(f"the {tower} map is {matrix.shape}, but the model's {tower} embeddings have "
                          f"{dimension} dimensions: the method was fitted on another model")
    if not np.isfinite(matrix).all():
        raise MethodError(f"the {tower} map has non-finite entries")
    return matrix


def fold(model, method: LinearMethod):
    """A copy of the `CLIPModel` `model` with `method`'s maps folded into its projections.

    The copy's config records the method under `cf_hf_method`; it is a plain `CLIPModel`.
    """
    import torch
    from transformers import CLIPModel

    if not isinstance(method, LinearMethod):
        name = getattr(method, "method", type(method).__name__)
        raise MethodError(f"{name} is not a linear map of the embeddings ({type(method).__name__}): it cannot fold into "
                          "a plain CLIPModel checkpoint; save it with its own model class (cf_hf.methods.transformed."
                          "save_transformed, cf_hf.methods.bendvlm.fit.save_bendvlm)")
    if not isinstance(model, CLIPModel):
        raise MethodError(f"{method.method} folds into a CLIPModel's projections; got {type(model).__name__}")
    folded = copy.deepcopy(model)
    with torch.no_grad():
        for matrix, projection, tower in ((method.image_map, folded.visual_projection, "image"),
                                          (method.text_map, folded.text_projection, "text")):
            if matrix is None:
                continue
            if getattr(projection, "bias", None) is not None:
                raise MethodError(f"the {tower} projection has a bias: a linear fold would not be exact")
            matrix = _check_map(matrix, projection.weight, tower)
            weight = projection.weight.detach().to(torch.float64)
            projection.weight.copy_((torch.from_numpy(matrix) @ weight).to(projection.weight.dtype))
    setattr(folded.config, METHOD_CONFIG_FIELD, method.record())
    return folded


def load_clip(original: str | Path):
    """Load a `CLIPModel` and its processor, with an error that names the checkpoint."""
    from transformers import AutoProcessor, CLIPConfig, CLIPModel

    try:
        config = CLIPConfig.from_pretrained(str(original))
    except (OSError, ValueError) as error:
        raise MethodError(f"cannot load a CLIP checkpoint from {str(original)!r}: {error}") from None
    if getattr(config, "model_type", None) != "clip":
        raise MethodError(f"{str(original)!r} is a {config.model_type!r} checkpoint; the methods fold into CLIP")
    model = CLIPModel.from_pretrained(str(original))
    processor = AutoProcessor.from_pretrained(str(original))
    return model.eval(), processor


def _is_folded_checkpoint(folder: Path) -> bool:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return METHOD_CONFIG_FIELD in config


def check_output_folder(output_dir: str | Path) -> None:
    """Refuse a non-empty folder that is not a checkpoint cf_hf folded (never overwrite a user's files)."""
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and not _is_folded_checkpoint(output_dir):
        raise MethodError(f"{output_dir} exists and is not a checkpoint cf_hf folded: choose another folder")


def save_folded(original: str | Path, method: LinearMethod, output_dir: str | Path, loaded=None) -> Path:
    """Fold `method` into the checkpoint `original` and save a plain CLIP checkpoint in `output_dir`.

    Writes weights (safetensors), config (with the method's record) and processor; the folder is
    written complete or not at all (a temporary sibling renamed at the end). `loaded`: the
    (model, processor) of `original` when the caller has them (a sweep loads them once).
    """
    import shutil

    output_dir = Path(output_dir)
    check_output_folder(output_dir)
    model, processor = loaded or load_clip(original)
    folded = fold(model, method)
    temporary = output_dir.with_name(f".{output_dir.name}.partial")
    shutil.rmtree(temporary, ignore_errors=True)
    folded.save_pretrained(temporary)
    processor.save_pretrained(temporary)
    if output_dir.exists():
        shutil.rmtree(output_dir)
    temporary.rename(output_dir)
    return output_dir
