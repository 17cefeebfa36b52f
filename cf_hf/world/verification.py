"""The professions world's verifier (`cf-hf verify --world`): the world's own CLIP judges adherence.

The shipped original CLIP knows the world's appearance words (its web captions name people
sometimes: `cf_hf.world.knowledge`), so the adherence check reads each attribute with the verifier's
`CLIPAttributeClassifier`, prompted with the world's appearance vocabulary (`appearance_words.yaml`
in `vocabulary.ATTRIBUTE_PROMPT_TEMPLATES`, as the knowledge check asks). An attribute the CLIP
cannot judge on the verifier's person crops is read by the pixel stand-in (`WorldAttributeReader`)
instead; `STAND_IN_ATTRIBUTES` names them (docs/world.md gives the measurement). The world's
segmenter gives the person masks and `PixelEmbedder` the near-copy check, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import vocabulary
from .components import WorldAttributeReader, WorldSegmenter
from .original import ORIGINAL_DIR

# Attributes the world's CLIP cannot yet judge on person crops: read by the pixel stand-in.
STAND_IN_ATTRIBUTES: tuple[str, ...] = ("gender", "skin_tone")
WORLD_PROMPTS_SOURCE = "cf_hf/world/appearance_words.yaml"


def world_zero_shot_prompts(grid):
    """The verifier's `ZeroShotPrompts` for the world's grid: each value's appearance words in every
    `vocabulary.ATTRIBUTE_PROMPT_TEMPLATES` prompt ("a photo of a dark-skinned person")."""
    from cf_hf.generation.verification.prompts import prompts_from_words

    words = vocabulary.appearance_vocabulary()
    templates = [template.replace("{word}", "{value}") for template in vocabulary.ATTRIBUTE_PROMPT_TEMPLATES]
    return prompts_from_words({name: words[name] for name in grid.names}, templates, WORLD_PROMPTS_SOURCE)


class WorldAdherenceReader:
    """The world's `AttributeClassifier`: the CLIP classifier for every attribute but
    `stand_in_attributes`, which the pixel reader reads. With `embed`, the CLIP's image embeddings."""

    def __init__(self, clip_classifier, stand_in_attributes: Sequence[str] = STAND_IN_ATTRIBUTES):
        self.clip_classifier = clip_classifier
        self.stand_in_attributes = tuple(stand_in_attributes)
        self.stand_in = WorldAttributeReader()

    @property
    def provenance(self) -> dict[str, str]:
        return {**self.clip_classifier.provenance, "stand_in_attributes": ",".join(self.stand_in_attributes) or "none"}

    def __call__(self, crops: Sequence, concepts: Sequence[str]) -> dict[str, np.ndarray]:
        probabilities = self.clip_classifier(crops, concepts)
        if self.stand_in_attributes:
            read = self.stand_in(crops, concepts)
            probabilities.update({name: read[name] for name in self.stand_in_attributes})
        return probabilities


def _model_name(model: str | Path) -> str:
    """The classifier's recorded model: the shipped original by its content, so that the score cache
    never outlives a re-trained original."""
    if Path(model) != ORIGINAL_DIR:
        return str(model)
    import hashlib

    digest = hashlib.sha256((ORIGINAL_DIR / "model.safetensors").read_bytes()).hexdigest()[:16]
    return f"cf_hf/world/original_clip@{digest}"


def world_verifier(grid, config, classifier_model: str | Path | None = None, show_progress: bool = False,
                   stand_in_attributes: Sequence[str] = STAND_IN_ATTRIBUTES):
    """The `Verifier` of the world's counterfactuals: `classifier_model` (unset or the generic
    default: the shipped original CLIP) judges adherence with the world's appearance words."""
    from cf_hf.generation.verification.classifier import DEFAULT_CLASSIFIER_MODEL, CLIPAttributeClassifier
    from cf_hf.generation.verification.scores import PixelEmbedder
    from cf_hf.generation.verification.scoring import Verifier

    model = ORIGINAL_DIR if classifier_model in (None, DEFAULT_CLASSIFIER_MODEL) else classifier_model

    def load_embedder():
        from cf_hf.evaluation.embedding import EmbeddingCache, EmbeddingConfig, EmbeddingEngine

        return EmbeddingEngine.from_pretrained(model, config=EmbeddingConfig(progress=False),
                                               cache=EmbeddingCache(memory_budget_mb=0))

    classifier = CLIPAttributeClassifier(grid, load_embedder, model_id=_model_name(model),
                                         prompts=world_zero_shot_prompts(grid))
    reader = WorldAdherenceReader(classifier, stand_in_attributes)
    return Verifier(grid, reader, PixelEmbedder(), WorldSegmenter(), config, show_progress)
