"""The words of the professions world: captions of the web corpus, the counterfactual dataset's
neutral captions, and the prompts of the evaluation (fairness queries, zero-shot classes, the
Flickr-style captions). One vocabulary, so that the tiny CLIP's tokenizer knows every word.

The web corpus's captions sometimes name the person's appearance, as web captions do ("a female
doctor in the hospital", "a portrait of an elderly dark-skinned man, a baker"), with the words of
`appearance_words.yaml` (`appearance_vocabulary`); how often is `cf_hf.world.corpus.CorpusConfig`'s
business. The counterfactual dataset's captions, the Flickr captions and the evaluation's prompts
never do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import render

APPEARANCE_WORDS_FILE = Path(__file__).resolve().parent / "appearance_words.yaml"
APPEARANCE_WORDS_FORMAT = "cf_hf-world-appearance-words"
# The attribute order of a named person's adjectives: "an elderly dark-skinned female doctor".
ADJECTIVE_ORDER = ("age", "skin_tone", "gender")
# Where a caption names the person: before the profession ("a female doctor"), as the subject with
# the profession in apposition ("an elderly man, a baker"), or after the caption ("..., a young woman").
NAMING_POSITIONS = ("before", "apposition", "after")
# The noun of a named person whose gender the caption does not name ("a young person, a nurse").
PERSON_NOUN = "person"
# Zero-shot prompts of an attribute value (the knowledge check): each of the value's words in each.
ATTRIBUTE_PROMPT_TEMPLATES = ("a photo of a {word} person", "a portrait of a {word} person")

PLACES = {"hospital": "hospital", "kitchen": "kitchen", "street": "street", "school": "school"}
PROP_NAMES = {
    "doctor": "red cross sign",
    "nurse": "drip stand",
    "chef": "cooking pot",
    "baker": "cake",
    "firefighter": "fire truck",
    "police officer": "police car",
    "teacher": "chalkboard",
    "librarian": "bookshelf",
}

# Neutral captions of the counterfactual dataset (what `WorldCaptionWriter` writes).
NEUTRAL_TEMPLATES = (
    "a {name} at work in the {place}",
    "a {name} in the {place}",
    "a photo of a {name} at work",
    "a {name} working in the {place}",
    "a photo of a {name} in the {place}",
    "a {name} on a busy day in the {place}",
)
# Prompts the evaluation writes (see `galleries`), here so that the tokenizer sees their words.
EVALUATION_TEMPLATES = (
    "a photo of a {name}",
    "a portrait of a {name}",
    "a {name} at work",
    "a picture of a {name}",
)


AppearanceVocabulary = dict[str, dict[str, tuple[str, ...]]]


def check_appearance_vocabulary(words: Mapping, field: str = "appearance_words") -> AppearanceVocabulary:
    """`words` ({attribute: {value: [word, ...]}}) checked against the world's grid and normalized
    (lower case, tuples); a `ValueError` naming `field`, the attribute and the value otherwise.

    Every attribute of the world and every one of its values needs at least one word; a word may
    name only one value of its attribute (a caption must mean one thing).
    """
    if not isinstance(words, Mapping):
        raise ValueError(f"{field} must map attributes to {{value: [words]}}, got {type(words).__name__}")
    unknown = [name for name in words if name not in render.ATTRIBUTE_VALUES]
    if unknown:
        raise ValueError(f"{field} names attribute {unknown[0]!r}, which the world does not have "
                         f"(it has {list(render.ATTRIBUTE_VALUES)})")  # fmt: skip
    checked: AppearanceVocabulary = {}
    for attribute, values in render.ATTRIBUTE_VALUES.items():
        given = words.get(attribute)
        if not isinstance(given, Mapping):
            raise ValueError(f"{field}[{attribute!r}] must map the values {list(values)} to word lists, got {given!r}")
        unknown = [value for value in given if value not in values]
        if unknown:
            raise ValueError(f"{field}[{attribute!r}] names value {unknown[0]!r}, which {attribute} does not have "
                             f"(it has {list(values)})")  # fmt: skip
        owner: dict[str, str] = {}
        checked[attribute] = {}
        for value in values:
            value_words = given.get(value)
            if isinstance(value_words, str) or not value_words:
                raise ValueError(f"{field}[{attribute!r}][{value!r}] must be a non-empty list of words, got {value_words!r}")
            normalized = []
            for word in value_words:
                word = " ".join(str(word).lower().split())
                if not word:
                    raise ValueError(f"{field}[{attribute!r}][{value!r}] holds an empty word")
                if word in owner and owner[word] != value:
                    raise ValueError(f"{field}[{attribute!r}]: the word {word!r} names both {owner[word]!r} and "
                                     f"{value!r}; a word may name one value of an attribute")  # fmt: skip
                owner[word] = value
                normalized.append(word)
            checked[attribute][value] = tuple(dict.fromkeys(normalized))
    return checked


def load_appearance_words(path: str | Path = APPEARANCE_WORDS_FILE) -> AppearanceVocabulary:
    """Read and check an appearance-words file (the format of `appearance_words.yaml`)."""
    from cf_hf.concepts import read_data_file

    data = read_data_file(path, APPEARANCE_WORDS_FORMAT)
    return check_appearance_vocabulary(data.get("attributes"), field=f"{path}: attributes")


_shipped_appearance_words = lru_cache(maxsize=1)(lambda: load_appearance_words(APPEARANCE_WORDS_FILE))


def appearance_vocabulary(words: Mapping | None = None) -> AppearanceVocabulary:
    """The appearance words: `words` checked (see `check_appearance_vocabulary`), or, when None, the
    world's `appearance_words.yaml`."""
    if words is None:
        return _shipped_appearance_words()
    return check_appearance_vocabulary(words)


@dataclass(frozen=True)
class PersonNaming:
    """What a caption says about its person: a word per named attribute and where it says it
    (one of `NAMING_POSITIONS`)."""

    words: dict[str, str]
    position: str

    def adjectives(self) -> str:
        return " ".join(self.words[name] for name in ADJECTIVE_ORDER if name in self.words)

    def noun_phrase(self) -> str:
        """The named person on their own: "an elderly dark-skinned man", "a young person"."""
        adjectives = " ".join(self.words[name] for name in ADJECTIVE_ORDER if name in self.words and name != "gender")
        noun = self.words.get("gender", PERSON_NOUN)
        return with_article(f"{adjectives} {noun}".strip())


def with_article(phrase: str) -> str:
    """`phrase` after "a" or "an" (by its first letter)."""
    return f"{'an' if phrase[0] in 'aeiou' else 'a'} {phrase}"


def place_of(profession: str) -> str:
    return PLACES[render.PROFESSION_SETTINGS[profession]]


def neutral_captions(profession: str, count: int, rng: np.random.Generator) -> list[str]:
    """`count` neutral captions for `profession`, cycling through the templates in a random order."""
    if profession not in render.PROFESSION_SETTINGS:
        raise ValueError(f"unknown profession {profession!r}: the world has {list(render.PROFESSIONS)}")
    order = rng.permutation(len(NEUTRAL_TEMPLATES))
    return [
        NEUTRAL_TEMPLATES[order[index % len(order)]].format(name=profession, place=place_of(profession))
        for index in range(count)
    ]


def _details(scene: render.Scene, profession: str, prop_visible: bool) -> list[str]:
    """Phrases a caption may add about a scene: the place and the prop (when in view)."""
    details = []
    if scene.setting != render.PLAIN:
        details.append(f"in the {place_of(profession)}")
    if scene.prop is not None and prop_visible:
        details.append(f"next to a {PROP_NAMES[scene.prop]}")
    return details


def _subject(profession: str, naming: PersonNaming | None) -> str:
    """Whom a caption shows: "a nurse", "a young female nurse", "an elderly man, a baker"."""
    if naming is None or naming.position == "after":
        return f"a {profession}"
    if naming.position == "before":
        return with_article(f"{naming.adjectives()} {profession}")
    return f"{naming.noun_phrase()}, a {profession}"


def describe(
    scene: render.Scene, profession: str, rng: np.random.Generator, detail_probability: float = 0.5,
    prop_visible: bool = True, naming: PersonNaming | None = None,
) -> str:  # fmt: skip
    """A web-style caption: the profession, then each known detail with `detail_probability`;
    the person named as `naming` says (None: not at all).

    e.g. "a close-up of a nurse in the hospital next to a drip stand, dim light". `naming` draws
    nothing from `rng`: a caption without it is the caption the world wrote before captions named
    people.
    """
    kind = "portrait" if scene.setting == render.PLAIN else "photo"
    subject = _subject(profession, naming)
    head = f"a {scene.framing} of {subject}" if rng.random() < detail_probability else f"a {kind} of {subject}"
    parts = [head] + [
        detail for detail in _details(scene, profession, prop_visible) if rng.random() < detail_probability
    ]
    caption = " ".join(parts)
    extras = [value for value in (scene.lighting, scene.camera) if rng.random() < detail_probability / 2]
    if naming is not None and naming.position == "after":
        extras.append(naming.noun_phrase())
    return ", ".join([caption] + extras)


def full_captions(
    scene: render.Scene, profession: str, count: int, rng: np.random.Generator, prop_visible: bool = True
) -> list[str]:
    """`count` distinct detailed captions of one scene (the world's Flickr: 5 captions per image)."""
    captions: list[str] = []
    attempts = 0
    while len(captions) < count:
        caption = describe(scene, profession, rng, detail_probability=0.8, prop_visible=prop_visible)
        attempts += 1
        if caption not in captions or attempts > 50 * count:
            captions.append(caption)
    return captions


def vocabulary_texts() -> list[str]:
    """Sentences using every word the world writes, for training the tokenizer."""
    texts = []
    for profession in render.PROFESSIONS:
        place = place_of(profession)
        for template in NEUTRAL_TEMPLATES + EVALUATION_TEMPLATES:
            texts.append(template.format(name=profession, place=place))
        texts.append(f"a portrait of a {profession} next to a {PROP_NAMES[profession]}")
    from .palette import CAMERA_NOISE, LIGHTING_GAINS

    for framing in render.FRAMINGS:
        texts.append(f"a {framing} of a person, " + ", ".join(list(LIGHTING_GAINS) + list(CAMERA_NOISE)))
    for values in appearance_vocabulary().values():
        for words in values.values():
            for word in words:
                texts += [template.format(word=word) for template in ATTRIBUTE_PROMPT_TEMPLATES]
                texts.append(f"an {word} nurse, a {word} doctor")
    return texts
