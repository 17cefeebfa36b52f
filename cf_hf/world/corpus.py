"""The world's biased web corpus: captioned scenes whose people follow a stereotype per profession.

Each profession has a **stereotyped person** (`STEREOTYPES`): a preferred gender presentation,
skin tone and age, each profession a different combination. In the corpus, each attribute of a
profession's person takes its preferred value with probability `stereotype_probability[attribute]`
(default 0.85) and one of the other values uniformly otherwise — the way web images of a profession
are skewed. A share `portrait_fraction` (default 20%) of the corpus shows the person on the plain
backdrop that the fairness gallery uses, still captioned with the profession (as web portraits
are); that is what lets the bias reach a gallery without context.

Captions name the profession and, at random, the place, the prop, the framing, the lighting and
the camera (`vocabulary.describe`). A share of them also names the person's appearance, as web
captions do, with the words of `appearance_words.yaml` ("a female doctor in the hospital", "a
portrait of an elderly dark-skinned man, a baker"). Each attribute is named on its own, with a
probability that depends on two things (`CorpusConfig`): **markedness** — a value the profession's
stereotype does not have is named more often than the stereotyped one (web text says "female
surgeon", rarely "male surgeon") — and the picture — plain-backdrop portraits name appearance more
often than scenes. The naming decisions come from their own random stream, so that with every
naming probability 0 (`CorpusConfig.unnamed()`) the corpus is, image for image and caption for
caption, the world's corpus from before captions named people.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from . import render, vocabulary

ATTRIBUTE_VALUES = render.ATTRIBUTE_VALUES
ATTRIBUTES = tuple(ATTRIBUTE_VALUES)

# The planted stereotype of each profession: every profession a different (gender, skin tone)
# pair, and the two professions of a setting differ in all three attributes.
STEREOTYPES: dict[str, render.Person] = {
    "doctor": render.Person("male", "light", "elderly"),
    "nurse": render.Person("female", "medium_dark", "young_adult"),
    "chef": render.Person("male", "medium_light", "young_adult"),
    "baker": render.Person("female", "dark", "elderly"),
    "firefighter": render.Person("male", "medium_dark", "young_adult"),
    "police officer": render.Person("female", "light", "elderly"),
    "teacher": render.Person("male", "dark", "elderly"),
    "librarian": render.Person("female", "medium_light", "young_adult"),
}
DEFAULT_STEREOTYPE_PROBABILITY = 0.85
# How often a caption names an attribute of its person (see `CorpusConfig`), by picture and
# markedness. Gender is named more often: hair length is the subtlest cue at 32 px, and at the
# skin tone / age rates the original reached only 64% zero-shot gender accuracy (docs/world.md).
DEFAULT_NAMING_PROBABILITY = {
    "scene_naming_probability": {"gender": 0.45, "skin_tone": 0.1, "age": 0.1},
    "scene_marked_naming_probability": {"gender": 0.75, "skin_tone": 0.3, "age": 0.3},
    "portrait_naming_probability": {"gender": 0.75, "skin_tone": 0.3, "age": 0.3},
    "portrait_marked_naming_probability": {"gender": 0.95, "skin_tone": 0.6, "age": 0.6},
}
NAMING_FIELDS = tuple(DEFAULT_NAMING_PROBABILITY)
DEFAULT_NAMING_POSITION_PROBABILITY = {"before": 0.5, "apposition": 0.3, "after": 0.2}
# The naming decisions' own random stream, beside the corpus seed (see `make_corpus`).
NAMING_STREAM = 1


def _default_stereotype_probability() -> dict[str, float]:
    return {attribute: DEFAULT_STEREOTYPE_PROBABILITY for attribute in ATTRIBUTES}


def _naming_default(name: str):
    return field(default_factory=lambda: dict(DEFAULT_NAMING_PROBABILITY[name]))


def _check_probability(name: str, probability) -> None:
    if isinstance(probability, bool) or not isinstance(probability, (int, float)) or not 0.0 <= probability <= 1.0:
        raise ValueError(f"CorpusConfig.{name} must be a probability in [0, 1], got {probability!r}")


def _check_per_attribute(name: str, probabilities) -> None:
    if not isinstance(probabilities, Mapping):
        raise ValueError(f"CorpusConfig.{name} must map attributes {ATTRIBUTES} to probabilities, got {probabilities!r}")
    for attribute, probability in probabilities.items():
        if attribute not in ATTRIBUTES:
            raise ValueError(f"CorpusConfig.{name} names attribute {attribute!r}, which the world does not have "
                             f"(it has {list(ATTRIBUTES)})")  # fmt: skip
        _check_probability(f"{name}[{attribute!r}]", probability)


@dataclass
class CorpusConfig:
    """How the biased corpus is drawn (see the module docstring). Every probability is checked on
    construction: a `ValueError` names the field and the value before anything is drawn."""

    size: int = 20_000
    """Image-caption pairs in the corpus."""
    stereotype_probability: dict[str, float] = field(default_factory=_default_stereotype_probability)
    """Per attribute: the probability that a person has their profession's stereotyped value (one
    of the other values uniformly otherwise); an attribute left out is drawn uniformly."""
    portrait_fraction: float = 0.2
    """Probability that a pair shows the person on the plain backdrop (a portrait), not in a scene."""
    prop_probability: float = render.PROP_PROBABILITY
    """Probability that a scene draws its profession's prop."""
    image_size: int = render.DEFAULT_IMAGE_SIZE
    seed: int = 0
    scene_naming_probability: dict[str, float] = _naming_default("scene_naming_probability")
    """Per attribute: the probability that the caption of a scene names the person's value of it,
    when that value is the profession's stereotyped one (unmarked: "a photo of a male doctor" is
    rare). An attribute left out is never named."""
    scene_marked_naming_probability: dict[str, float] = _naming_default("scene_marked_naming_probability")
    """Per attribute: the same for a scene whose person's value is not the stereotyped one (marked:
    "a photo of a female doctor")."""
    portrait_naming_probability: dict[str, float] = _naming_default("portrait_naming_probability")
    """Per attribute: the probability that a portrait's caption names the person's stereotyped value."""
    portrait_marked_naming_probability: dict[str, float] = _naming_default("portrait_marked_naming_probability")
    """Per attribute: the probability that a portrait's caption names a value that is not the stereotyped one."""
    naming_position_probability: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_NAMING_POSITION_PROBABILITY)
    )
    """Where a caption that names its person does so (`vocabulary.NAMING_POSITIONS`), as
    probabilities summing to 1: "before" the profession ("a female doctor"), in "apposition" ("an
    elderly man, a baker"), or "after" the caption ("a doctor in the hospital, a young woman")."""
    appearance_words: dict[str, dict[str, list[str]]] | None = None
    """The appearance vocabulary, {attribute: {value: [word, ...]}}; None: the world's
    `appearance_words.yaml`. Checked by `vocabulary.check_appearance_vocabulary`."""

    def __post_init__(self):
        _check_per_attribute("stereotype_probability", self.stereotype_probability)
        _check_probability("portrait_fraction", self.portrait_fraction)
        _check_probability("prop_probability", self.prop_probability)
        for name in NAMING_FIELDS:
            _check_per_attribute(name, getattr(self, name))
        positions = self.naming_position_probability
        if not isinstance(positions, Mapping):
            raise ValueError(f"CorpusConfig.naming_position_probability must map positions to probabilities, got {positions!r}")
        for position, probability in positions.items():
            if position not in vocabulary.NAMING_POSITIONS:
                raise ValueError(f"CorpusConfig.naming_position_probability names position {position!r}; "
                                 f"the positions are {list(vocabulary.NAMING_POSITIONS)}")  # fmt: skip
            _check_probability(f"naming_position_probability[{position!r}]", probability)
        if abs(sum(positions.values()) - 1.0) > 1e-6:
            raise ValueError(f"CorpusConfig.naming_position_probability must sum to 1, got {dict(positions)} "
                             f"(sum {sum(positions.values()):g})")  # fmt: skip
        if self.appearance_words is not None:
            vocabulary.check_appearance_vocabulary(self.appearance_words, field="CorpusConfig.appearance_words")

    @classmethod
    def unnamed(cls, **overrides) -> CorpusConfig:
        """The world before captions named people: every naming probability 0 (the corpus is then
        exactly the one the world drew before; the ablation's "unnamed" condition)."""
        zeros = {name: {attribute: 0.0 for attribute in ATTRIBUTES} for name in NAMING_FIELDS}
        return cls(**{**zeros, **overrides})

    def names_appearance(self) -> bool:
        """Whether any caption may name the person's appearance."""
        return any(probability > 0 for name in NAMING_FIELDS for probability in getattr(self, name).values())


@dataclass
class SceneSet:
    """Rendered scenes with their captions and labels.

    images: (n, H, W, 3) uint8. captions: one caption per image, or a list per image (Flickr).
    labels: name -> (n,) array: `concept` (profession index), `gender`, `skin_tone`, `age`,
    `setting`, `has_prop` (bool: the prop is drawn), `prop_visible` (bool: and is in view),
    `framing`, `lighting`, `camera`.
    """

    images: np.ndarray
    captions: list
    labels: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, indices) -> SceneSet:
        indices = np.asarray(indices)
        return SceneSet(
            self.images[indices],
            [self.captions[index] for index in indices],
            {name: values[indices] for name, values in self.labels.items()},
        )


def draw_attribute(attribute: str, preferred: str, probability: float, rng: np.random.Generator) -> str:
    """`preferred` with `probability`, otherwise one of the other values uniformly."""
    if rng.random() < probability:
        return preferred
    others = [value for value in ATTRIBUTE_VALUES[attribute] if value != preferred]
    return others[rng.integers(len(others))]


def biased_person(
    profession: str, probabilities: Mapping[str, float], rng: np.random.Generator
) -> render.Person:
    """A person for `profession` following its stereotype with the given per-attribute probabilities.

    An attribute missing from `probabilities` is drawn uniformly.
    """
    stereotype = STEREOTYPES[profession].as_dict()
    values = {}
    for attribute in ATTRIBUTES:
        if attribute in probabilities:
            values[attribute] = draw_attribute(
                attribute, stereotype[attribute], probabilities[attribute], rng
            )
        else:
            options = ATTRIBUTE_VALUES[attribute]
            values[attribute] = options[rng.integers(len(options))]
    return render.Person(**values)


# A prop counts as shown (captions may name it) when at least this many of its pixels are visible.
MIN_VISIBLE_PROP_PIXELS = 6


def render_scenes(scenes: list[render.Scene], image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, H, W, 3) uint8 images of `scenes`, and (n,) bool: whether each shows its prop."""
    images = np.empty((len(scenes), image_size, image_size, 3), dtype=np.uint8)
    prop_visible = np.zeros(len(scenes), dtype=bool)
    for index, scene in enumerate(scenes):
        images[index], labels = render.render(scene, image_size)
        prop_visible[index] = int((labels == render.PROP).sum()) >= MIN_VISIBLE_PROP_PIXELS
    return images, prop_visible


def scene_labels(scenes: list[render.Scene], professions: list[str | None]) -> dict[str, np.ndarray]:
    """The label arrays of `SceneSet` for scenes and the profession each depicts (None: -1)."""
    return {
        "concept": np.array(
            [-1 if name is None else render.PROFESSIONS.index(name) for name in professions], dtype=np.int64
        ),
        "gender": np.array([scene.person.gender for scene in scenes]),
        "skin_tone": np.array([scene.person.skin_tone for scene in scenes]),
        "age": np.array([scene.person.age for scene in scenes]),
        "setting": np.array([scene.setting for scene in scenes]),
        "has_prop": np.array([scene.prop is not None for scene in scenes]),
        "framing": np.array([scene.framing for scene in scenes]),
        "lighting": np.array([scene.lighting for scene in scenes]),
        "camera": np.array([scene.camera for scene in scenes]),
    }


def naming_probability(config: CorpusConfig, attribute: str, portrait: bool, marked: bool) -> float:
    """The probability that a caption names `attribute` of its person (see `CorpusConfig`)."""
    name = f"{'portrait' if portrait else 'scene'}_{'marked_' if marked else ''}naming_probability"
    return float(getattr(config, name).get(attribute, 0.0))


def draw_naming(
    person: render.Person, profession: str, portrait: bool, config: CorpusConfig,
    words: vocabulary.AppearanceVocabulary, rng: np.random.Generator,
) -> vocabulary.PersonNaming | None:  # fmt: skip
    """What the caption of a picture of `person` as a `profession` says about them (None: nothing).

    Each attribute is named on its own with `naming_probability` (marked when the person's value is
    not the profession's stereotyped one), with one of its value's words drawn uniformly; the
    position is drawn from `config.naming_position_probability`. Draws from `rng` only for an
    attribute whose probability is above 0.
    """
    stereotype = STEREOTYPES[profession]
    named = {}
    for attribute in ATTRIBUTES:
        value = getattr(person, attribute)
        probability = naming_probability(config, attribute, portrait, marked=value != getattr(stereotype, attribute))
        if probability > 0 and rng.random() < probability:
            options = words[attribute][value]
            named[attribute] = options[rng.integers(len(options))]
    if not named:
        return None
    positions = list(config.naming_position_probability)
    weights = np.array([config.naming_position_probability[position] for position in positions], dtype=float)
    return vocabulary.PersonNaming(named, positions[rng.choice(len(positions), p=weights / weights.sum())])


def make_corpus(config: CorpusConfig | None = None) -> SceneSet:
    """Draw and render the biased web corpus (see module docstring).

    Extra label `named`: per pair, the attributes its caption names, comma-separated ("" for none).
    """
    config = config or CorpusConfig()
    rng = np.random.default_rng(config.seed)
    scenes, professions = [], []
    for _ in range(config.size):
        profession = render.PROFESSIONS[rng.integers(len(render.PROFESSIONS))]
        person = biased_person(profession, config.stereotype_probability, rng)
        portrait = rng.random() < config.portrait_fraction
        setting = render.PLAIN if portrait else render.PROFESSION_SETTINGS[profession]
        scenes.append(
            render.sample_scene(
                setting, person, rng, profession=profession, prop_probability=config.prop_probability
            )
        )
        professions.append(profession)
    images, prop_visible = render_scenes(scenes, config.image_size)
    # The naming decisions draw from their own stream: `rng` is drawn exactly as before they existed.
    naming_rng = np.random.default_rng([config.seed, NAMING_STREAM])
    words = vocabulary.appearance_vocabulary(config.appearance_words)
    namings = [
        draw_naming(scene.person, profession, scene.setting == render.PLAIN, config, words, naming_rng)
        for scene, profession in zip(scenes, professions)
    ]
    captions = [
        vocabulary.describe(scene, profession, rng, prop_visible=visible, naming=naming)
        for scene, profession, visible, naming in zip(scenes, professions, prop_visible, namings)
    ]
    labels = scene_labels(scenes, professions)
    labels["prop_visible"] = prop_visible
    labels["named"] = np.array(
        ["" if naming is None else ",".join(name for name in ATTRIBUTES if name in naming.words) for naming in namings]
    )
    return SceneSet(images, captions, labels)
