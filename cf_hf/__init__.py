"""cf_hf: counterfactual fine-tuning of CLIP against associative bias ("They're All Doctors"), and every
other debiasing method in one harness.

    from cf_hf import CounterfactualTrainingArguments, train_counterfactual, interpolate_sweep

    args = CounterfactualTrainingArguments(output_dir="cf-clip", group_size=4, beta_cf=1.0)
    finetuned = train_counterfactual("openai/clip-vit-base-patch32", "path/to/counterfactuals", args)
    interpolate_sweep("openai/clip-vit-base-patch32", finetuned, [0.0, 0.5, 1.0], "cf-clip-sweep")

The names below load lazily (as diffusers' top level does): `import cf_hf` imports no torch,
transformers or diffusers, and changes nothing global.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> the module that defines it
_IMPORT_STRUCTURE: dict[str, list[str]] = {
    "cf_hf.methods.counterfactual.modeling": ["CounterfactualCLIPModel"],
    "cf_hf.methods.counterfactual.trainer": ["CounterfactualTrainingArguments"],
    "cf_hf.methods.counterfactual.losses": ["clip_loss", "counterfactual_clip_loss", "counterfactual_loss"],
    "cf_hf.methods.counterfactual.sampler": ["GroupBatchSampler"],
    "cf_hf.interpolation": ["interpolate", "interpolate_sweep", "load_sweep", "read_sweep"],
    "cf_hf.evaluation": [
        "AttributeGallery", "RetrievalSet", "ZeroShotSet", "EmbeddingConfig", "EmbeddingEngine", "EvaluationConfig",
        "FairnessConfig", "evaluate_models", "load_fairface", "load_utkface", "load_pata", "load_karpathy",
        "load_imagenet_folder", "load_hf_gallery", "load_results", "write_report",
    ],
    "cf_hf.methods": ["METHODS", "METHOD_CONFIG_FIELD", "get_method", "register_model_types"],
    "cf_hf.methods.transformed": ["TransformedCLIPModel", "TransformedCLIPConfig", "save_transformed"],
    "cf_hf.methods.bendvlm.modeling": ["BendVLMCLIPModel", "BendVLMCLIPConfig"],
    "cf_hf.methods.compare": ["compare"],
    "cf_hf.methods.bias_alignment.modeling": ["BiasAlignedCLIPModel", "BiasAlignedCLIPConfig"],
    "cf_hf.metrics": [
        "max_skew", "min_skew", "ndkl", "fairness_summary", "able", "recall_at_k", "zero_shot_accuracy",
        "worst_group_accuracy", "worst_group_recall", "balanced_accuracy",
    ],
}
# Public names that are another module's name for the same thing.
_ALIASES = {"train_counterfactual": ("cf_hf.methods.counterfactual.trainer", "train")}
_NAME_TO_MODULE = {name: module for module, names in _IMPORT_STRUCTURE.items() for name in names}

__all__ = sorted([*_NAME_TO_MODULE, *_ALIASES, "__version__"])

if TYPE_CHECKING:
    from cf_hf.evaluation import (
        AttributeGallery,
        EmbeddingConfig,
        EmbeddingEngine,
        EvaluationConfig,
        FairnessConfig,
        RetrievalSet,
        ZeroShotSet,
        evaluate_models,
        load_fairface,
        load_hf_gallery,
        load_imagenet_folder,
        load_karpathy,
        load_pata,
        load_results,
        load_utkface,
        write_report,
    )
    from cf_hf.interpolation import interpolate, interpolate_sweep, load_sweep, read_sweep
    from cf_hf.methods import METHOD_CONFIG_FIELD, METHODS, get_method, register_model_types
    from cf_hf.methods.bendvlm.modeling import BendVLMCLIPConfig, BendVLMCLIPModel
    from cf_hf.methods.bias_alignment.modeling import BiasAlignedCLIPConfig, BiasAlignedCLIPModel
    from cf_hf.methods.compare import compare
    from cf_hf.methods.counterfactual.losses import clip_loss, counterfactual_clip_loss, counterfactual_loss
    from cf_hf.methods.counterfactual.modeling import CounterfactualCLIPModel
    from cf_hf.methods.counterfactual.sampler import GroupBatchSampler
    from cf_hf.methods.counterfactual.trainer import CounterfactualTrainingArguments
    from cf_hf.methods.counterfactual.trainer import train as train_counterfactual
    from cf_hf.methods.transformed import TransformedCLIPConfig, TransformedCLIPModel, save_transformed
    from cf_hf.metrics import (
        able,
        balanced_accuracy,
        fairness_summary,
        max_skew,
        min_skew,
        ndkl,
        recall_at_k,
        worst_group_accuracy,
        worst_group_recall,
        zero_shot_accuracy,
    )


def __getattr__(name: str):
    if name in _ALIASES:
        module, attribute = _ALIASES[name]
        return getattr(importlib.import_module(module), attribute)
    if name in _NAME_TO_MODULE:
        return getattr(importlib.import_module(_NAME_TO_MODULE[name]), name)
    raise AttributeError(f"module 'cf_hf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
