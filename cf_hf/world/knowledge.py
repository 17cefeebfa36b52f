"""What a world CLIP knows about people, measured on the world's FairFace (`python -m cf_hf.world.knowledge`).

Three measurements of a checkpoint (by default the shipped original, `cf_hf.world.original`):

* **zero-shot attribute accuracy** — each FairFace person classified by the nearest value of each
  attribute, a value's text embedding being the mean over its words (`appearance_words.yaml`) in
  the prompts `vocabulary.ATTRIBUTE_PROMPT_TEMPLATES` ("a photo of a female person"). Chance is
  1 / (number of values).
* **the text side of the stereotype** — for how many professions the prompt "a photo of a
  {profession}" lies closer (cosine) to its stereotyped value's embedding than to every other
  value's, per attribute.
* **retrieval bias** — MaxSkew@k per attribute of the fairness queries (`galleries.FAIRNESS_TEMPLATES`
  x the professions, as the demo measures it), beside the random-ranking floor of the same gallery.

The gallery is the demo's test draw of the world's FairFace (`GALLERY_SEEDS["test"]`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import galleries, render, vocabulary
from .corpus import ATTRIBUTES, STEREOTYPES

# The demo's test draw of the world's FairFace (cf_hf.world.demo.config.GALLERY_SEEDS["test"][0]).
FAIRFACE_TEST_SEED = 101
FAIRFACE_PER_CELL = 128
FAIRNESS_K = 100
RANDOM_FLOOR_QUERIES = 64
PROFESSION_PROMPT = "a photo of a {profession}"
# What the shipped original is expected to know (tests/test_world_knowledge.py, docs/world.md).
ACCURACY_TARGETS = {"gender": 0.90, "skin_tone": 0.60, "age": 0.85}
STEREOTYPE_TEXT_TARGET = 7  # of the 8 professions, per attribute


@dataclass
class Knowledge:
    """The measurements (see the module docstring), per attribute."""

    zero_shot_accuracy: dict[str, float]
    chance: dict[str, float]
    stereotype_text: dict[str, int]
    stereotype_text_professions: dict[str, list[str]]
    max_skew: dict[str, float]
    random_floor: dict[str, float]
    fairness_k: int
    n_images: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _normalize(array: np.ndarray) -> np.ndarray:
    return array / np.linalg.norm(array, axis=-1, keepdims=True)


def text_embeddings(model, tokenizer, texts: list[str]) -> np.ndarray:
    """(len(texts), dim) unit-norm projected text embeddings."""
    import torch

    with torch.no_grad():
        tokens = tokenizer(texts, padding=True, return_tensors="pt")
        features = model.get_text_features(**tokens)
    features = getattr(features, "pooler_output", features)
    return _normalize(features.float().numpy())


def image_embeddings(model, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """(n, dim) unit-norm projected image embeddings of uint8 (n, H, W, 3) images at the model's size."""
    import torch

    from .pretrain import pixel_values

    chunks = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            features = model.get_image_features(pixel_values=pixel_values(images[start : start + batch_size]))
            chunks.append(getattr(features, "pooler_output", features).float().numpy())
    return _normalize(np.concatenate(chunks))


def value_embeddings(model, tokenizer, words: vocabulary.AppearanceVocabulary) -> dict[str, np.ndarray]:
    """Per attribute, (n_values, dim) unit-norm embeddings: each value's mean over its words in
    every `ATTRIBUTE_PROMPT_TEMPLATES` prompt (values in the world's order)."""
    embeddings = {}
    for attribute in ATTRIBUTES:
        rows = []
        for value in render.ATTRIBUTE_VALUES[attribute]:
            prompts = [template.format(word=word) for word in words[attribute][value]
                       for template in vocabulary.ATTRIBUTE_PROMPT_TEMPLATES]  # fmt: skip
            rows.append(text_embeddings(model, tokenizer, prompts).mean(axis=0))
        embeddings[attribute] = _normalize(np.stack(rows))
    return embeddings


def measure(
    model, tokenizer, fairface=None, words: vocabulary.AppearanceVocabulary | None = None,
    fairness_k: int = FAIRNESS_K, random_floor_queries: int = RANDOM_FLOOR_QUERIES,
) -> Knowledge:  # fmt: skip
    """The measurements of `model` (a `CLIPModel` with `tokenizer`) on `fairface` (a `SceneSet` of
    `galleries.fairface`; None: the test draw)."""
    from cf_hf.evaluation import FairnessConfig, build_queries, evaluate_fairness, random_floor

    fairface = fairface if fairface is not None else galleries.fairface(FAIRFACE_PER_CELL, seed=FAIRFACE_TEST_SEED)
    words = vocabulary.appearance_vocabulary(words)
    images = image_embeddings(model, fairface.images)
    values = value_embeddings(model, tokenizer, words)
    professions = list(render.PROFESSIONS)
    profession_texts = text_embeddings(model, tokenizer, [PROFESSION_PROMPT.format(profession=name) for name in professions])

    accuracy, chance, stereotype_count, stereotype_professions = {}, {}, {}, {}
    for attribute in ATTRIBUTES:
        names = render.ATTRIBUTE_VALUES[attribute]
        predicted = np.asarray(names)[(images @ values[attribute].T).argmax(axis=1)]
        accuracy[attribute] = float(np.mean(predicted == fairface.labels[attribute]))
        chance[attribute] = 1.0 / len(names)
        nearest = (profession_texts @ values[attribute].T).argmax(axis=1)
        stereotyped = [name for name, index in zip(professions, nearest)
                       if names[index] == getattr(STEREOTYPES[name], attribute)]  # fmt: skip
        stereotype_count[attribute] = len(stereotyped)
        stereotype_professions[attribute] = stereotyped

    config = FairnessConfig(templates=list(galleries.FAIRNESS_TEMPLATES), concepts=professions, ks=[fairness_k],
                            random_floor_queries=random_floor_queries)  # fmt: skip
    gallery = galleries.attribute_gallery(fairface)
    queries = build_queries(config.concepts, config.templates)
    fairness = evaluate_fairness(text_embeddings(model, tokenizer, [query.text for query in queries]), images,
                                 gallery, queries, config)  # fmt: skip
    main, want = str(fairness["main_k"]), config.desired[0]
    max_skew = {name: float(entry["by_desired"][want][main]["max_skew"]["mean"])
                for name, entry in fairness["attributes"].items()}  # fmt: skip
    floor = {name: float(by_desired[want]["max_skew"]) for name, by_desired in random_floor(gallery, config).items()}
    return Knowledge(accuracy, chance, stereotype_count, stereotype_professions, max_skew, floor,
                     fairness["main_k"], len(fairface))  # fmt: skip


def measure_checkpoint(path: str | Path | None = None, **kwargs) -> Knowledge:
    """`measure` on a saved checkpoint folder (None: the shipped original)."""
    from transformers import CLIPModel, CLIPTokenizer

    from .original import ORIGINAL_DIR

    path = Path(path) if path is not None else ORIGINAL_DIR
    model = CLIPModel.from_pretrained(str(path)).eval()
    return measure(model, CLIPTokenizer.from_pretrained(str(path)), **kwargs)


def format_table(knowledge: Knowledge) -> str:
    """A Markdown table of the measurements, with the targets."""
    rows = ["| attribute | zero-shot accuracy (chance; target) | professions whose prompt is nearest its "
            f"stereotyped value (target) | MaxSkew@{knowledge.fairness_k} (random floor) |",
            "|---|---|---|---|"]  # fmt: skip
    for attribute in ATTRIBUTES:
        rows.append(
            f"| {attribute} | {knowledge.zero_shot_accuracy[attribute]:.1%} ({knowledge.chance[attribute]:.0%}; "
            f"≥ {ACCURACY_TARGETS[attribute]:.0%}) | {knowledge.stereotype_text[attribute]} of {len(render.PROFESSIONS)} "
            f"(≥ {STEREOTYPE_TEXT_TARGET}) | {knowledge.max_skew[attribute]:.2f} ({knowledge.random_floor[attribute]:.2f}) |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m cf_hf.world.knowledge", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", default=None, help="a CLIP checkpoint folder; unset: the shipped original")
    parser.add_argument("--json", action="store_true", help="print the measurements as JSON")
    args = parser.parse_args(argv)
    knowledge = measure_checkpoint(args.checkpoint)
    print(json.dumps(knowledge.as_dict(), indent=1) if args.json else format_table(knowledge))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
