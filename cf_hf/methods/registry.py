"""The one registry of debiasing methods (as peft's `mapping.py`): name -> where its `fit` and its
configuration live. Entries are strings, imported on first use, so that listing the methods imports
nothing heavy."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

# What a method may need, the comparison table's columns: attribute-labelled images to fit on, prompts or
# attribute words, a training run (gradient steps), and a reference set stored and read at query time.
LABELS, PROMPTS, TRAINING, QUERY_TIME_REFERENCE = "labels", "prompts", "training", "reference set at query time"
NEEDS = (LABELS, PROMPTS, TRAINING, QUERY_TIME_REFERENCE)


@dataclass(frozen=True)
class MethodSpec:
    """A registered method.

    Attributes:
        name: its name in `cf-hf compare --methods`, tables and checkpoint records.
        summary: one line: what it does.
        fit_path: "module:function" of `fit(original, output_dir, ...) -> list[MethodCheckpoint]` (for
            `ffr`, the classifier trainer, which returns the output folder).
        config_path: "module:Class" of its configuration (a dataclass or `TrainingArguments`), or None
            when its options are keyword arguments of `fit`.
        needs: what it needs, from `NEEDS` (labels, prompts, training, reference set at query time).
    """

    name: str
    summary: str
    fit_path: str
    config_path: str | None = None
    needs: tuple[str, ...] = ()

    def __post_init__(self):
        unknown = [need for need in self.needs if need not in NEEDS]
        if unknown:
            raise ValueError(f"method {self.name!r}: unknown needs {unknown}; known: {list(NEEDS)}")

    @property
    def training_free(self) -> bool:
        """Whether it fits without a training run (seconds, not a fine-tune)."""
        return TRAINING not in self.needs

    @staticmethod
    def _load(path: str):
        module, attribute = path.split(":")
        return getattr(importlib.import_module(module), attribute)

    @property
    def fit(self) -> Callable:
        """The method's fit function (imports its module)."""
        return self._load(self.fit_path)

    @property
    def config(self) -> type | None:
        """The method's configuration class, or None."""
        return self._load(self.config_path) if self.config_path else None


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("counterfactual", "fine-tune CLIP on counterfactual images, then WiSE-FT (the paper's method)",
                   "cf_hf.methods.counterfactual.fit:fit_counterfactual",
                   "cf_hf.methods.counterfactual.trainer:CounterfactualTrainingArguments", needs=(TRAINING,)),
        MethodSpec("clip_clip", "drop the embedding dimensions most informative of the attribute (Wang et al. 2021)",
                   "cf_hf.methods.clip_clip.fit:fit_clip_clip", needs=(LABELS,)),
        MethodSpec("biased_prompts", "project the spurious prompts' span out of text embeddings (Chuang et al. 2023)",
                   "cf_hf.methods.biased_prompts.fit:fit_biased_prompts", needs=(PROMPTS,)),
        MethodSpec("closed_form", "shrink the prompts' attribute subspace in both towers, closed form (after Lian et al. 2026)",
                   "cf_hf.methods.closed_form.fit:fit_closed_form", needs=(PROMPTS,)),
        MethodSpec("bendvlm", "per-query: remove the local attribute subspace, equalize group similarity (BendVLM, 2024)",
                   "cf_hf.methods.bendvlm.fit:fit_bendvlm", needs=(LABELS, PROMPTS, QUERY_TIME_REFERENCE)),
        MethodSpec("bias_alignment", "heads that align image and text bias on a frozen CLIP (CVPR 2025)",
                   "cf_hf.methods.bias_alignment.fit:fit_bias_alignment",
                   "cf_hf.methods.bias_alignment.trainer:BiasAlignmentArguments", needs=(LABELS, PROMPTS, TRAINING)),
        MethodSpec("sfid", "replace the coordinates most important to predict the attribute with a neutral value "
                   "(Jung et al., NeurIPS 2024)", "cf_hf.methods.sfid.fit:fit_sfid", needs=(LABELS,)),
        MethodSpec("spd", "replace the embeddings' component in the attribute's linearly decodable subspace with a "
                   "neutral value (Zhao et al., CVPR 2026)", "cf_hf.methods.spd.fit:fit_spd", needs=(LABELS,)),
        MethodSpec("ffr", "classifiers trained on balanced synthetic data, then real data (From Fake to Real)",
                   "cf_hf.methods.ffr.trainer:train_classifier",
                   "cf_hf.methods.ffr.trainer:ClassifierTrainingArguments", needs=(LABELS, TRAINING)),
    )
}


def training_free_methods() -> list[str]:
    """The registered methods that fit without a training run, in registry order."""
    return [name for name, spec in METHODS.items() if spec.training_free]


def get_method(name: str) -> MethodSpec:
    """The registered method `name`; a clear error naming the registered ones otherwise."""
    from cf_hf.methods.linear import MethodError

    if name not in METHODS:
        raise MethodError(f"unknown method {name!r}: the registered methods are {sorted(METHODS)}")
    return METHODS[name]


# Model types of the methods whose checkpoints are their own model classes -> the module that registers
# them with `AutoConfig`/`AutoModel` when imported.
MODEL_TYPES = {"clip_bias_aligned": "cf_hf.methods.bias_alignment.modeling",
               "clip_embedding_transform": "cf_hf.methods.transformed",
               "clip_bendvlm": "cf_hf.methods.bendvlm.modeling"}


def register_model_types() -> None:
    """Register every method's model class with the Auto classes, so that `AutoModel` (and the
    evaluation harness) loads any cf_hf checkpoint; idempotent."""
    for module in MODEL_TYPES.values():
        importlib.import_module(module)


def register_with_auto_classes(model_type: str, config_class: type, model_class: type) -> None:
    """Make `AutoConfig` / `AutoModel` resolve `model_type` to a method's classes (idempotent): what every
    method with its own model class calls when its modeling module is imported."""
    from transformers import AutoConfig, AutoModel

    try:
        AutoConfig.register(model_type, config_class)
    except ValueError:  # already registered
        pass
    try:
        AutoModel.register(config_class, model_class)
    except ValueError:
        pass
