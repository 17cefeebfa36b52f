"""The loaders of the generator's data files (the shipped YAML files sit next to this module)."""

from __future__ import annotations

import itertools
import json
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cf_hf.concepts.concept import Concept

DATA_DIR = Path(__file__).resolve().parent
PROFESSIONS_FILE = DATA_DIR / "professions.yaml"
DECORATORS_FILE = DATA_DIR / "decorators.yaml"
ATTRIBUTE_GRID_FILE = DATA_DIR / "attribute_grid.yaml"
APPEARANCE_WORDS_FILE = DATA_DIR / "appearance_words.yaml"
CAPTION_TEMPLATES_FILE = DATA_DIR / "caption_templates.yaml"
# Prompt sets beyond professions, for the fairness evaluation (`cf-hf evaluate --concepts FILE`); each
# file names its source and the prompt templates its words are written for.
PROMPT_SET_FILES = {
    "professions": PROFESSIONS_FILE,
    "adjectives": DATA_DIR / "adjectives.yaml",
    "activities": DATA_DIR / "activities.yaml",
    "stereotype_terms": DATA_DIR / "stereotype_terms.yaml",
}
# The placeholders a prompt template marks the concept with.
CONCEPT_PLACEHOLDERS = ("{concept}", "{}")

SUPPORTED_SUFFIXES = (".yaml", ".yml", ".json")


def read_data_file(path: str | Path, expected_format: str) -> dict:
    """Read a YAML/JSON data file into a mapping; a clear error for anything else.

    A file may state its kind in a top-level `format:` key (the shipped files do); when it does,
    it must be `expected_format`, so that passing the decorators file as the concepts file fails
    loudly instead of yielding nonsense.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ValueError(
            f"{path}: unknown file format {suffix or '(no extension)'!r}; "
            f"{expected_format} files must be one of {', '.join(SUPPORTED_SUFFIXES)}."
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {expected_format} file.")
    text = path.read_text(encoding="utf-8")
    if suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError as error:
            raise ValueError(f"{path}: not valid JSON ({error}).") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            where = getattr(error, "problem_mark", None)
            at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise ValueError(f"{path}: not valid YAML{at}: {problem}.") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level of a {expected_format} file.")
    declared = data.get("format")
    if declared is not None and declared != expected_format:
        raise ValueError(f"{path}: this is a {declared!r} file, expected {expected_format!r}.")
    return data


def indefinite_article(phrase: str) -> str:
    """"an" before a vowel letter, "a" otherwise (a spelling rule; pass `article` where it fails)."""
    return "an" if phrase[:1].lower() in "aeiou" else "a"


def fix_articles(text: str) -> str:
    """Turn a lone "a" before a word starting with a vowel into "an" ("a elderly" -> "an elderly")."""
    return re.sub(r"\b([aA]) (?=[aeiouAEIOU])", lambda match: match.group(1) + "n ", text)


# ---------------------------------------------------------------------------------------------
# Concepts


@dataclass(frozen=True)
class ConceptScenes:
    """What the caption templates may say about a concept: where it works and what it does."""

    places: tuple[str, ...] = ()
    activities: tuple[str, ...] = ()


def _concept_entries(path: str | Path | None) -> list[dict]:
    path = PROFESSIONS_FILE if path is None else Path(path)
    data = read_data_file(path, "cf_hf-concepts")
    entries = data.get("concepts")
    if not entries:
        raise ValueError(f"{path}: no concepts (expected a non-empty `concepts:` list).")
    normalized = []
    for entry in entries:
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or not entry.get("name"):
            raise ValueError(f"{path}: each concept needs a `name` (got {entry!r}).")
        normalized.append(entry)
    names = [entry["name"] for entry in normalized]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{path}: concepts listed twice: {duplicates}.")
    return normalized


def _select(entries: list[dict], names: Sequence[str] | None, path) -> list[dict]:
    if names is None:
        return entries
    by_name = {entry["name"]: entry for entry in entries}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ValueError(f"unknown concepts {unknown} (known in {path or PROFESSIONS_FILE}: {sorted(by_name)}).")
    return [by_name[name] for name in names]


def load_concepts(path: str | Path | None = None, names: Sequence[str] | None = None) -> list[Concept]:
    """The concepts of a concepts file (default: the shipped professions), optionally only `names`.

    An entry is a mapping with `name` and optional `plural` (default: name + "s") and `article`
    (default: by spelling), or just the name as a string.
    """
    entries = _select(_concept_entries(path), names, path)
    return [
        Concept(
            name=entry["name"],
            plural=entry.get("plural") or entry["name"] + "s",
            article=entry.get("article") or indefinite_article(entry["name"]),
        )
        for entry in entries
    ]


@dataclass(frozen=True)
class ConceptSet:
    """A concepts file read whole: its concepts, the prompt templates it is written for (None: the
    file names none, the evaluation's defaults apply) and its source (None when it names none)."""

    concepts: tuple[Concept, ...]
    templates: tuple[str, ...] | None = None
    source: str | None = None


def load_concept_set(path: str | Path | None = None) -> ConceptSet:
    """A concepts file with its optional `templates:` (prompt templates with `{concept}` or `{}`, and
    optionally `{article}`) and `source:` (where its words come from); default: the shipped professions."""
    file = PROFESSIONS_FILE if path is None else Path(path)
    data = read_data_file(file, "cf_hf-concepts")
    templates = data.get("templates")
    if templates is not None:
        if isinstance(templates, str) or not isinstance(templates, list) or not templates:
            raise ValueError(f"{file}: `templates:` must be a non-empty list of prompt templates, got {templates!r}.")
        for index, template in enumerate(templates):
            if not isinstance(template, str) or not any(mark in template for mark in CONCEPT_PLACEHOLDERS):
                raise ValueError(f"{file}: template {index} ({template!r}) has no concept placeholder: write "
                                 "'{concept}' (or '{}') where the concept goes.")
        templates = tuple(templates)
    source = data.get("source")
    if source is not None and (not isinstance(source, str) or not source.strip()):
        raise ValueError(f"{file}: `source:` must say where the concepts come from, got {source!r}.")
    return ConceptSet(concepts=tuple(load_concepts(file)), templates=templates, source=source)


def load_concept_scenes(path: str | Path | None = None) -> dict[str, ConceptScenes]:
    """Concept name -> the places and activities its file lists for the caption templates."""
    return {
        entry["name"]: ConceptScenes(
            places=tuple(entry.get("places") or ()), activities=tuple(entry.get("activities") or ())
        )
        for entry in _concept_entries(path)
    }


# ---------------------------------------------------------------------------------------------
# Decorators


def load_decorators(path: str | Path | None = None) -> dict[str, tuple[str, ...]]:
    """Decorator field (setting, lighting, ...) -> the values a base image may draw from."""
    path = DECORATORS_FILE if path is None else Path(path)
    table = read_data_file(path, "cf_hf-decorators").get("decorators") or {}
    if not isinstance(table, dict):
        raise ValueError(f"{path}: `decorators:` must map each field to a list of values.")
    decorators = {}
    for name, values in table.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"{path}: decorator field {name!r} needs a non-empty list of values.")
        decorators[str(name)] = tuple(str(value) for value in values)
    return decorators


# ---------------------------------------------------------------------------------------------
# Attribute grid


@dataclass(frozen=True)
class Attribute:
    """One sensitive attribute of the grid: its values (dataset label names) and their prompt phrases."""

    name: str
    values: tuple[str, ...]
    phrases: Mapping[str, str] = field(default_factory=dict)
    optional: bool = False

    def phrase(self, value: str) -> str:
        return self.phrases.get(value, value.replace("_", " "))


@dataclass(frozen=True)
class AttributeGrid:
    """The cross product of attribute values that counterfactuals are painted with.

    `prompt_template` has one `{attribute}` placeholder per attribute and may use `{concept}`;
    `appearance_prompt` fills it with the values' phrases.
    """

    attributes: tuple[Attribute, ...]
    prompt_template: str = ""

    def __post_init__(self):
        if not self.attributes:
            raise ValueError(
                "the attribute grid is empty: give at least one attribute with at least one value "
                "(e.g. gender: [female, male])."
            )
        for attribute in self.attributes:
            if not attribute.values:
                raise ValueError(f"the attribute grid is empty: attribute {attribute.name!r} has no values.")
            if len(set(attribute.values)) != len(attribute.values):
                raise ValueError(f"attribute {attribute.name!r} lists a value twice: {attribute.values}.")
        if not self.prompt_template:
            placeholders = " ".join("{" + attribute.name + "}" for attribute in self.attributes)
            object.__setattr__(self, "prompt_template", "a photo of a " + placeholders + " {concept}")
        allowed = set(self.names) | {"concept"}
        used = {name for _, name, _, _ in string.Formatter().parse(self.prompt_template) if name}
        if used - allowed:
            raise ValueError(
                f"appearance prompt template {self.prompt_template!r} uses unknown placeholders "
                f"{sorted(used - allowed)}; allowed: {sorted(allowed)}."
            )

    @property
    def names(self) -> list[str]:
        return [attribute.name for attribute in self.attributes]

    def cells(self) -> list[dict[str, str]]:
        """Every combination of values, in a fixed order (the first attribute varies slowest)."""
        return [
            dict(zip(self.names, values))
            for values in itertools.product(*(attribute.values for attribute in self.attributes))
        ]

    def appearance_prompt(self, appearance: Mapping[str, str], concept: str) -> str:
        """The inpainting prompt for one cell, e.g. "a photo of an elderly Black woman working as a nurse"."""
        phrases = {attribute.name: attribute.phrase(appearance[attribute.name]) for attribute in self.attributes}
        return fix_articles(" ".join(self.prompt_template.format(concept=concept, **phrases).split()))

    @classmethod
    def from_values(cls, values: Mapping[str, Iterable[str]], prompt_template: str = "") -> AttributeGrid:
        """A grid from a plain mapping, e.g. `{"gender": ["female", "male"], "age": ["young", "old"]}`."""
        return cls(tuple(Attribute(name, tuple(vals)) for name, vals in values.items()), prompt_template)

    def to_dict(self) -> dict:
        return {
            "prompt_template": self.prompt_template,
            "attributes": {
                attribute.name: {"values": list(attribute.values), "phrases": dict(attribute.phrases)}
                for attribute in self.attributes
            },
        }


def load_attribute_grid(
    path: str | Path | None = None, optional_attributes: Sequence[str] = ()
) -> AttributeGrid:
    """The attribute grid of a file (default: gender × FairFace race × age), plus the optional
    attributes named in `optional_attributes` (shipped: body_type, skin_tone)."""
    path = ATTRIBUTE_GRID_FILE if path is None else Path(path)
    data = read_data_file(path, "cf_hf-attribute-grid")
    table = data.get("attributes") or {}
    if not isinstance(table, dict):
        raise ValueError(f"{path}: `attributes:` must map each attribute name to its values.")
    known_optional = {name for name, spec in table.items() if isinstance(spec, dict) and spec.get("optional")}
    unknown = set(optional_attributes) - known_optional
    if unknown:
        raise ValueError(f"{path}: no optional attributes {sorted(unknown)} (has {sorted(known_optional)}).")
    attributes = []
    for name, spec in table.items():
        spec = {"values": spec} if isinstance(spec, list) else dict(spec or {})
        if spec.get("optional") and name not in optional_attributes:
            continue
        values = tuple(str(value) for value in spec.get("values") or ())
        attributes.append(Attribute(str(name), values, dict(spec.get("phrases") or {}), bool(spec.get("optional"))))
    template = data.get("prompt_template") or ""
    if template:
        # The shipped template names only the core attributes: optional ones go in front of them
        # ("a slim young Black woman").
        names = [attribute.name for attribute in attributes]
        core = [name for _, name, _, _ in string.Formatter().parse(template) if name in names]
        extra = [name for name in names if name not in core]
        if extra and core:
            first = "{" + core[0] + "}"
            template = template.replace(first, " ".join("{" + name + "}" for name in extra) + " " + first, 1)
    try:
        return AttributeGrid(tuple(attributes), template)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


# ---------------------------------------------------------------------------------------------
# Caption validator word lists and caption templates


@dataclass(frozen=True)
class AppearanceWords:
    """Words (by category) and phrases a neutral caption must not contain."""

    words: Mapping[str, frozenset[str]]
    phrases: tuple[str, ...] = ()

    def category_of(self, word: str) -> str | None:
        for category, words in self.words.items():
            if word in words:
                return category
        return None


def load_appearance_words(path: str | Path | None = None) -> AppearanceWords:
    path = APPEARANCE_WORDS_FILE if path is None else Path(path)
    data = read_data_file(path, "cf_hf-appearance-words")
    words = {category: frozenset(str(word).lower() for word in values) for category, values in (data.get("words") or {}).items()}
    if not any(words.values()):
        raise ValueError(f"{path}: no appearance words (expected `words:` mapping categories to lists).")
    return AppearanceWords(words, tuple(str(phrase).lower() for phrase in data.get("phrases") or ()))


@dataclass(frozen=True)
class CaptionTemplates:
    templates: tuple[str, ...]
    generic_places: tuple[str, ...]
    generic_activities: tuple[str, ...]


def load_caption_templates(path: str | Path | None = None) -> CaptionTemplates:
    path = CAPTION_TEMPLATES_FILE if path is None else Path(path)
    data = read_data_file(path, "cf_hf-caption-templates")
    templates = tuple(data.get("templates") or ())
    if not templates:
        raise ValueError(f"{path}: no caption templates.")
    return CaptionTemplates(
        templates, tuple(data.get("generic_places") or ()), tuple(data.get("generic_activities") or ())
    )
