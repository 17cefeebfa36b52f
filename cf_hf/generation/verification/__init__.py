"""Verified counterfactuals: score every generated image, flag the failures, measure the generator.

A counterfactual can fail in ways that poison a debiasing dataset: the person keeps the base
image's appearance (a copy), the requested appearance is ignored (more often for some groups than
others: the generator's own bias), the scene outside the person changes, the person disappears or
is duplicated. One module per step:

- `scores` — the per-row scores (context, adherence, person, duplicates), the `verify_*` columns
  and the `verdict` a row gets under the thresholds of `VerificationConfig`;
- `classifier` — the zero-shot attribute classifier (`CLIPAttributeClassifier`) and its prompts;
  it reads through a CLIP embedder its caller builds (the `cf-hf verify` command);
- `scoring` — `score_groups` (batched) and `verify_dataset` (chunked, resumable from a cache
  folder), and the `Verifier` that applies them to every split;
- `report` — the score columns attached, failing rows moved to a `rejected` split
  (`apply_verification`), and the `VerificationSummary` of pass rates: the card's "Verification"
  section and its plot.

Checks that cannot run (no base image in a group, no segmenter) are named as skipped. The names
below load lazily: importing this package imports neither numpy nor PIL.
"""

from __future__ import annotations

import importlib

# public name -> the module that defines it
_IMPORT_STRUCTURE: dict[str, list[str]] = {
    "cf_hf.generation.verification.scores": [
        "FAILURES_COLUMN", "FAIL_ADHERENCE", "FAIL_CONTEXT_DIFFERENCE", "FAIL_CONTEXT_SSIM", "FAIL_DUPLICATE",
        "FAIL_PERSON_DUPLICATED", "FAIL_PERSON_MISSING", "PASSED_COLUMN", "SCORE_PREFIX", "ImageEmbedder",
        "PixelEmbedder", "VerificationConfig", "VerificationError", "context_scores", "score_columns",
        "score_features", "verdict",
    ],
    "cf_hf.generation.verification.classifier": [
        "DEFAULT_CLASSIFIER_MODEL", "AttributeClassifier", "CLIPAttributeClassifier", "CLIPEmbedder",
        "attribute_prompts",
    ],
    "cf_hf.generation.verification.scoring": [
        "Group", "VerificationReport", "Verifier", "score_groups", "verify_dataset",
    ],
    "cf_hf.generation.verification.report": [
        "REJECTED_SPLIT", "VERIFICATION_PLOT", "VerificationSummary", "apply_verification", "plot_pass_rates",
        "render_verification_section",
    ],
}  # fmt: skip
_NAME_TO_MODULE = {name: module for module, names in _IMPORT_STRUCTURE.items() for name in names}

__all__ = sorted(_NAME_TO_MODULE)


def __getattr__(name: str):
    if name in _NAME_TO_MODULE:
        return getattr(importlib.import_module(_NAME_TO_MODULE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
