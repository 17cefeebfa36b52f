"""Stage 1 — neutral captions: scene and activity, never the person's appearance.

`LLMCaptionWriter` asks an instruction-tuned chat model (a `transformers` text-generation
pipeline) for captions, keeps those the `CaptionValidator` accepts, retries, and fills whatever is
still missing from the deterministic `TemplateCaptionWriter`, which is also the offline mode.
"""

from __future__ import annotations

import logging
import random
import re
from collections import Counter
from dataclasses import dataclass

from cf_hf.concepts import (
    AppearanceWords,
    CaptionTemplates,
    ConceptScenes,
    load_appearance_words,
    load_caption_templates,
    load_concept_scenes,
)
from cf_hf.generation.interfaces import Concept
from cf_hf.generation.runtime import derive_seed, release_accelerator_memory, torch_dtype
from cf_hf.utils.model_loading import check_model_source, model_loading

logger = logging.getLogger(__name__)

DEFAULT_CAPTION_MODEL = "meta-llama/Llama-3.2-3B-Instruct"
MIN_CAPTION_WORDS = 4
MAX_CAPTION_WORDS = 30
# Sequences sampled per pipeline call: the language model's memory grows with it (KV cache).
DEFAULT_CAPTION_BATCH_SIZE = 16
_WORD = re.compile(r"[a-z]+(?:[-'][a-z]+)*")


@dataclass(frozen=True)
class CaptionValidator:
    """Accepts a caption only if it names the concept, reads as a sentence of sensible length and
    contains no appearance word (gender, race, age, body; lists in `cf_hf/concepts`)."""

    words: AppearanceWords
    min_words: int = MIN_CAPTION_WORDS
    max_words: int = MAX_CAPTION_WORDS

    @classmethod
    def default(cls) -> CaptionValidator:
        return cls(load_appearance_words())

    def problems(self, caption: str, concept: Concept) -> list[str]:
        """Why `caption` is rejected (empty list: accepted). Each reason is a short label."""
        tokens = _WORD.findall(caption.lower().replace("\u2019", "'"))
        tokens = [token[:-2] if token.endswith("'s") else token for token in tokens]
        problems = []
        if not caption[:1].isupper():
            problems.append("not a sentence")
        if not self.min_words <= len(tokens) <= self.max_words:
            problems.append("length")
        text = " " + " ".join(tokens) + " "
        if not any(f" {name.lower()} " in text for name in (concept.name, concept.plural)):
            problems.append("concept missing")
        for token in tokens:
            category = self.words.category_of(token)
            if category is not None:
                problems.append(f"appearance word ({category})")
        problems += ["appearance word (phrase)" for phrase in self.words.phrases if f" {phrase} " in text]
        return list(dict.fromkeys(problems))

    def __call__(self, caption: str, concept: Concept) -> bool:
        return not self.problems(caption, concept)


class TemplateCaptionWriter:
    """Deterministic captions from templates × the concept's places and activities (offline mode).

    Captions are drawn without replacement from every combination (the concept's own places and
    activities plus the generic ones), shuffled by the seed; they repeat only when `count` exceeds
    the combinations.
    """

    provenance = {"caption_writer": "templates"}

    def __init__(
        self, scenes: dict[str, ConceptScenes] | None = None, templates: CaptionTemplates | None = None
    ):
        self.scenes = load_concept_scenes() if scenes is None else scenes
        self.templates = load_caption_templates() if templates is None else templates

    def all_captions(self, concept: Concept) -> list[str]:
        scenes = self.scenes.get(concept.name, ConceptScenes())
        places = list(scenes.places) + list(self.templates.generic_places)
        activities = list(scenes.activities) + list(self.templates.generic_activities)
        captions = []
        for template in self.templates.templates:
            for activity in activities:
                for place in places:
                    caption = template.format(
                        article=concept.article,
                        Article=concept.article.capitalize(),
                        name=concept.name,
                        activity=activity,
                        place=place,
                        Place=place[:1].upper() + place[1:],
                    )
                    captions.append(" ".join(caption.split()))
        return list(dict.fromkeys(captions))

    def __call__(self, concept: Concept, count: int, seed: int) -> list[str]:
        pool = self.all_captions(concept)
        random.Random(derive_seed(seed, "templates", concept.name)).shuffle(pool)
        return [pool[index % len(pool)] for index in range(count)]


CAPTION_SYSTEM_PROMPT = (
    "You write short, factual captions for photographs in an image dataset. You describe the place, "
    "the objects and the activity. You never describe the person: no gender, pronouns, age, "
    "ethnicity, skin, hair, face or body."
)
CAPTION_USER_PROMPT = (
    "Write one caption, a single sentence of at most 20 words, for a photo of {article} {name} at "
    "work. Start with \"{Article} {name}\". Describe only the setting and what the {name} is doing. "
    "Reply with the caption only."
)


class LLMCaptionWriter:
    """Captions from a chat model through the `transformers` text-generation pipeline.

    Each attempt samples the missing captions in calls of at most `batch_size` sequences (each
    call seeded, so a run is reproducible); the validator filters them; after `max_attempts` the
    template writer fills the rest, so a weak or offline model still yields a complete, valid set.
    Sampled sequences share one random stream per call, so the captions depend on `batch_size`
    (it is part of the provenance: a resumed run with another value is refused). The pipeline
    loads on first use; `release()` frees it. `rejections` counts the reasons captions were
    rejected, across calls.
    """

    def __init__(
        self,
        model_id: str = DEFAULT_CAPTION_MODEL,
        *,
        revision: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        max_attempts: int = 3,
        max_new_tokens: int = 48,
        temperature: float = 0.9,
        batch_size: int = DEFAULT_CAPTION_BATCH_SIZE,
        validator: CaptionValidator | None = None,
        fallback: TemplateCaptionWriter | None = None,
        pipeline=None,
    ):
        self.model_id = model_id
        self.revision = revision
        self.device = device
        self.dtype = dtype
        torch_dtype(dtype)  # validate early
        if batch_size < 1:
            raise ValueError(f"caption batch_size must be ≥ 1, got {batch_size} (--caption_batch_size).")
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.validator = validator or CaptionValidator.default()
        self.fallback = fallback or TemplateCaptionWriter()
        self._pipeline = pipeline
        self.rejections: Counter[str] = Counter()

    @property
    def provenance(self) -> dict[str, str]:
        return {
            "caption_writer": "llm",
            "model_id": self.model_id,
            "revision": self.revision or "main",
            "dtype": self.dtype,
            "max_attempts": str(self.max_attempts),
            "temperature": str(self.temperature),
            "batch_size": str(self.batch_size),
            "fallback": "templates",
        }

    def check_model(self) -> None:
        """Raise `ModelLoadError` now if the model cannot be found (reads no weights)."""
        if self._pipeline is None:
            check_model_source(self.model_id, self.revision, "caption model")

    @property
    def pipeline(self):
        if self._pipeline is None:
            from transformers import pipeline

            logger.info("loading caption model %s", self.model_id)
            dtype = torch_dtype(self.dtype)
            with model_loading(self.model_id, "caption model", self.revision):
                self._pipeline = pipeline(
                    "text-generation", model=self.model_id, revision=self.revision, device=self.device, dtype=dtype
                )
        return self._pipeline

    def release(self) -> None:
        """Drop the language model and return its memory to the device (the orchestration calls
        this once the captions are written). Calling the writer again loads it again."""
        if self._pipeline is not None:
            self._pipeline = None
            release_accelerator_memory()

    def messages(self, concept: Concept) -> list[dict[str, str]]:
        user = CAPTION_USER_PROMPT.format(
            article=concept.article, Article=concept.article.capitalize(), name=concept.name
        )
        return [{"role": "system", "content": CAPTION_SYSTEM_PROMPT}, {"role": "user", "content": user}]

    @staticmethod
    def clean(text: str) -> str:
        """The first non-empty line, without list markers, quotes or a "Caption:" prefix."""
        line = next((line.strip() for line in text.splitlines() if line.strip()), "")
        line = re.sub(r"^(?:[-*\d.)\s]+|caption\s*:\s*)", "", line, flags=re.IGNORECASE)
        return line.strip().strip("\"'\u201c\u201d").strip()

    def _sample(self, concept: Concept, count: int, seed: int) -> list[str]:
        import torch

        captions = []
        for chunk, start in enumerate(range(0, count, self.batch_size)):
            # Sampling draws from torch's generator (all devices); `transformers.set_seed` would
            # also work but imports far more (peft, when installed). The first call keeps `seed`.
            torch.manual_seed(seed if chunk == 0 else derive_seed(seed, "chunk", chunk))
            outputs = self.pipeline(
                self.messages(concept),
                num_return_sequences=min(self.batch_size, count - start),
                do_sample=True,
                temperature=self.temperature,
                max_new_tokens=self.max_new_tokens,
                return_full_text=False,
            )
            captions += [self.clean(_generated_text(output)) for output in outputs]
        return captions

    def __call__(self, concept: Concept, count: int, seed: int) -> list[str]:
        accepted: list[str] = []
        for attempt in range(self.max_attempts):
            missing = count - len(accepted)
            if missing <= 0:
                break
            for caption in self._sample(concept, missing, derive_seed(seed, "llm", concept.name, attempt)):
                problems = self.validator.problems(caption, concept)
                if caption in accepted:
                    problems.append("duplicate")
                if problems:
                    self.rejections.update(problems)
                elif len(accepted) < count:
                    accepted.append(caption)
        if len(accepted) < count:
            logger.info(
                "%s: %d of %d captions from templates (the model's failed the validator)",
                concept.name, count - len(accepted), count,
            )
            templates = self.fallback(concept, count, seed)
            # Unused templates first; repeats only when the templates run out.
            fill = [caption for caption in templates if caption not in accepted] + templates
            accepted += fill[: count - len(accepted)]
        return accepted


def _generated_text(output) -> str:
    """The assistant's text from one text-generation output (chat or plain form)."""
    text = output["generated_text"]
    if isinstance(text, list):  # a chat: the last message is the answer
        text = text[-1]["content"]
    return str(text)
