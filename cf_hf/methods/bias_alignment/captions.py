"""The bias-alignment module's captions: the authors' per-attribute settings (`captions.yaml`), a
caption template of one's own, and the captions of labelled images with every counterfactual each
row may show (`CaptionRows`; the data draws one at every fetch)."""

from __future__ import annotations

import itertools
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cf_hf.methods.linear import MethodError

CAPTIONS_FILE = Path(__file__).resolve().parent / "captions.yaml"
CAPTIONS_FORMAT = "cf_hf-bias-alignment-captions"
# Counterfactual strings per row at most: the product of the other values of every removed attribute.
MAX_COUNTERFACTUALS_PER_ROW = 4096


def template_fields(template: str) -> list[str]:
    """The `{name}` fields of a caption template."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


@dataclass(frozen=True)
class CaptionSetting:
    """How labelled images are captioned and counterfactually re-captioned.

    Attributes:
        name: the setting's name ('gender', 'age', 'race', 'joint' for the authors'; 'custom').
        attributes: the attributes the counterfactual swaps.
        caption: the caption template, `{attribute}` fields.
        counterfactual: the counterfactual's template (the authors' joint setting drops "celebrity").
        words, counterfactual_words: attribute -> {label: word} for each template; a label not listed
            is written as itself.
        difference: what cf_hf does differently from the authors' code ('' if nothing).
    """

    name: str
    attributes: tuple[str, ...]
    caption: str
    counterfactual: str
    words: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    counterfactual_words: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    difference: str = ""

    @classmethod
    def custom(cls, attributes: Sequence[str], template: str,
               words: Mapping[str, Mapping[str, str]] | None = None) -> CaptionSetting:
        """One template for the caption and its counterfactual, with `words` for both."""
        words = {name: {str(label): str(word) for label, word in mapping.items()} for name, mapping in (words or {}).items()}
        return cls("custom", tuple(attributes), template, template, words, words)

    def with_words(self, words: Mapping[str, Mapping[str, str]] | None) -> CaptionSetting:
        """The setting with `words` overriding its words (caption and counterfactual) per attribute named."""
        if not words:
            return self
        words = {name: {str(label): str(word) for label, word in mapping.items()} for name, mapping in words.items()}
        return CaptionSetting(self.name, self.attributes, self.caption, self.counterfactual,
                              {**self.words, **words}, {**self.counterfactual_words, **words}, self.difference)

    def record(self) -> dict:
        """What a checkpoint's config records of the captions."""
        return {"setting": self.name, "attributes": list(self.attributes), "caption": self.caption,
                "counterfactual": self.counterfactual, "words": {k: dict(v) for k, v in self.words.items()},
                "counterfactual_words": {k: dict(v) for k, v in self.counterfactual_words.items()},
                "counterfactual_draw": "uniform over the other words of each removed attribute, redrawn at every "
                                       "fetch (seeded by the training seed and the epoch)",
                "difference_from_authors": self.difference or None}


def _word_table(value, path: Path, where: str) -> dict[str, dict[str, str]]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(mapping, dict) for mapping in value.values()):
        raise MethodError(f"{path}: {where} must map attribute -> {{label: word}}, got {value!r}")
    return {str(name): {str(label): str(word) for label, word in mapping.items()} for name, mapping in value.items()}


def load_caption_settings(path: str | Path | None = None) -> dict[str, CaptionSetting]:
    """The caption settings of a captions file (default: the shipped `captions.yaml`, the authors'),
    by name."""
    from cf_hf.concepts import read_data_file

    path = Path(path) if path is not None else CAPTIONS_FILE
    try:
        data = read_data_file(path, CAPTIONS_FORMAT)
    except ValueError as error:
        raise MethodError(str(error)) from None
    settings = data.get("settings")
    if not isinstance(settings, dict) or not settings:
        raise MethodError(f"{path}: no 'settings' mapping (name -> attributes, caption, ...)")
    loaded = {}
    for name, entry in settings.items():
        where = f"settings.{name}"
        if not isinstance(entry, dict):
            raise MethodError(f"{path}: {where} must be a mapping, got {entry!r}")
        unknown = sorted(set(entry) - {"attributes", "caption", "counterfactual", "words", "counterfactual_words",
                                       "difference"})
        if unknown:
            raise MethodError(f"{path}: {where} has unknown key(s) {unknown}")
        attributes, caption = entry.get("attributes"), entry.get("caption")
        if not isinstance(attributes, list) or not attributes or not all(isinstance(a, str) for a in attributes):
            raise MethodError(f"{path}: {where}.attributes must be a non-empty list of attribute names")
        if not isinstance(caption, str) or not caption:
            raise MethodError(f"{path}: {where}.caption must be a template string")
        counterfactual = entry.get("counterfactual") or caption
        words = _word_table(entry.get("words"), path, f"{where}.words")
        counterfactual_words = _word_table(entry.get("counterfactual_words"), path, f"{where}.counterfactual_words")
        for template, key in ((caption, "caption"), (counterfactual, "counterfactual")):
            unmentioned = [attribute for attribute in attributes if attribute not in template_fields(template)]
            if unmentioned:
                raise MethodError(f"{path}: {where}.{key} {template!r} does not mention {unmentioned}")
        loaded[str(name)] = CaptionSetting(str(name), tuple(attributes), caption, counterfactual, words,
                                           counterfactual_words or words, str(entry.get("difference") or ""))
    return loaded


def authors_caption_setting(attributes: Sequence[str], path: str | Path | None = None) -> CaptionSetting:
    """The authors' caption setting that removes exactly `attributes` (in any order): gender, age, race,
    or the three together (their joint setting)."""
    settings = load_caption_settings(path)
    for setting in settings.values():
        if sorted(setting.attributes) == sorted(attributes):
            return setting
    available = "; ".join(f"{name}: {' '.join(setting.attributes)}" for name, setting in settings.items())
    raise MethodError(f"no caption setting of the authors removes {' '.join(attributes) or 'nothing'} (they have "
                      f"{available}): give a caption template of your own (cf-hf train-ba --caption_template)")


def check_caption_setup(setting: CaptionSetting, labels: Mapping[str, Sequence], source: str) -> None:
    """Errors for an attribute the data lacks or a template does not mention, and for template fields
    without labels."""
    attributes = list(setting.attributes)
    if not attributes:
        raise MethodError("name at least one attribute to remove")
    missing = [name for name in attributes if name not in labels]
    if missing:
        raise MethodError(f"{source} has no attribute {', '.join(map(repr, missing))}; it has {sorted(labels)}")
    for template in dict.fromkeys((setting.caption, setting.counterfactual)):
        fields = template_fields(template)
        unmentioned = [name for name in attributes if name not in fields]
        if unmentioned:
            raise MethodError(f"the caption template {template!r} does not mention "
                              f"{', '.join(map(repr, unmentioned))}: no counterfactual caption can be made; add "
                              "{" + unmentioned[0] + "} to it")
        unlabelled = [name for name in fields if name not in labels]
        if unlabelled:
            raise MethodError(f"the caption template {template!r} uses {unlabelled}, which {source} does not label "
                              f"(it labels {sorted(labels)})")


@dataclass
class CaptionRows:
    """The captions of n labelled images and the counterfactual captions each may show.

    Attributes:
        captions: (n,) each row's caption.
        counterfactual_captions: (m,) the distinct counterfactual captions (m is small: one per
            combination of words, not per row).
        counterfactual_choices: (n,) per row, the indices into `counterfactual_captions` it draws from
            (uniformly, at every fetch).
    """

    captions: list[str]
    counterfactual_captions: list[str]
    counterfactual_choices: list[np.ndarray]


def caption_rows(labels: Mapping[str, Sequence], setting: CaptionSetting, source: str = "the data") -> CaptionRows:
    """The captions of labelled images (`labels`: attribute -> (n,) labels) and, per row, every
    counterfactual caption: each removed attribute written as another of its words (the words of the
    values present in the data), the other fields as the row's own."""
    check_caption_setup(setting, labels, source)
    fields = list(dict.fromkeys(template_fields(setting.caption) + template_fields(setting.counterfactual)))
    count = len(next(iter(labels.values())))
    for name in fields:
        empty = [row for row, value in enumerate(labels[name]) if value is None or value == ""]
        if empty:
            raise MethodError(f"{source}: {len(empty)} row(s) have no {name!r} label (rows {empty[:10]})")

    def word(table: Mapping[str, Mapping[str, str]], name: str, label: str) -> str:
        return table.get(name, {}).get(label, label)

    swapped_words = {name: sorted({word(setting.counterfactual_words, name, str(value)) for value in labels[name]})
                     for name in setting.attributes}
    single = [name for name, found in swapped_words.items() if len(found) < 2]
    if single:
        raise MethodError(f"{source}: {single[0]!r} is written with the single word {swapped_words[single[0]]}: "
                          "no counterfactual")
    per_row = int(np.prod([len(found) - 1 for found in swapped_words.values()]))
    if per_row > MAX_COUNTERFACTUALS_PER_ROW:
        raise MethodError(f"{source}: swapping {list(setting.attributes)} gives {per_row} counterfactual captions per "
                          f"row (at most {MAX_COUNTERFACTUALS_PER_ROW}): remove fewer attributes at once")
    counterfactual_ids: dict[str, int] = {}
    by_labels: dict[tuple, tuple[str, np.ndarray]] = {}  # few label combinations, many rows
    captions, choices = [], []
    for row in range(count):
        own = tuple(str(labels[name][row]) for name in fields)
        if own not in by_labels:
            values = dict(zip(fields, own))
            caption = setting.caption.format(**{name: word(setting.words, name, value) for name, value in values.items()})
            kept = {name: word(setting.counterfactual_words, name, value) for name, value in values.items()}
            others = [[other for other in swapped_words[name] if other != kept[name]] for name in setting.attributes]
            ids = []
            for combination in itertools.product(*others):
                text = setting.counterfactual.format(**{**kept, **dict(zip(setting.attributes, combination))})
                ids.append(counterfactual_ids.setdefault(text, len(counterfactual_ids)))
            by_labels[own] = (caption, np.asarray(ids, dtype=np.int64))
        caption, ids = by_labels[own]
        captions.append(caption)
        choices.append(ids)
    return CaptionRows(captions, list(counterfactual_ids), choices)


def caption_setting(attributes: Sequence[str], template: str | None = None,
                    words: Mapping[str, Mapping[str, str]] | None = None) -> CaptionSetting:
    """The setting for removing `attributes`: unset `template`, the authors' for those attributes (with
    `words` overriding theirs); else `template` for caption and counterfactual alike, with `words`."""
    if template is None:
        return authors_caption_setting(attributes).with_words(words)
    return CaptionSetting.custom(attributes, template, words)
