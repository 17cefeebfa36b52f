"""The verifier's zero-shot prompts per attribute, read from a data file (`zero_shot_prompts.yaml`).

A value's prompts are every template of its attribute with every word of the value; the classifier
embeds them and takes the normalized mean as the value's text embedding (a prompt ensemble).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cf_hf.generation.verification.scores import VerificationError, grid_attribute

ZERO_SHOT_PROMPTS_FILE = Path(__file__).resolve().parent / "zero_shot_prompts.yaml"
ZERO_SHOT_PROMPTS_FORMAT = "cf_hf-zero-shot-prompts"


@dataclass(frozen=True)
class ZeroShotPrompts:
    """Per attribute: its prompt templates and, per value, its words."""

    templates: Mapping[str, tuple[str, ...]]
    words: Mapping[str, Mapping[str, tuple[str, ...]]]
    source: str = "zero_shot_prompts.yaml (shipped)"

    def prompts(self, attribute: str, value: str, concept: str) -> list[str]:
        """The prompts of one value, e.g. ["a photo of an East Asian person working as a doctor"]."""
        from cf_hf.concepts import fix_articles

        return [fix_articles(" ".join(template.format(value=word, concept=concept).split()))
                for template in self.templates[attribute] for word in self.words[attribute][value]]  # fmt: skip


def _as_words(entry) -> tuple[str, ...]:
    return tuple(str(word) for word in entry) if isinstance(entry, list | tuple) else (str(entry),)


def load_zero_shot_prompts(grid, path: str | Path | None = None) -> ZeroShotPrompts:
    """The prompts of every attribute of `grid` from `path` (default: the shipped file).

    An attribute the file does not list uses its `default_template` with the grid's phrases, and a
    value a listed attribute gives no word for uses the grid's phrase of it (a grid of your own may
    have other values than the shipped file); a file with no template for an attribute is an error."""
    from cf_hf.concepts import read_data_file

    path = Path(path) if path is not None else ZERO_SHOT_PROMPTS_FILE
    data = read_data_file(path, ZERO_SHOT_PROMPTS_FORMAT)
    listed = data.get("attributes") or {}
    default = data.get("default_template")
    templates, words = {}, {}
    for name in grid.names:
        values = list(grid_attribute(grid, name).values)
        if name in listed:
            entry = listed[name] or {}
            given = {str(value): _as_words(word) for value, word in (entry.get("words") or {}).items()}
            templates[name] = tuple(str(template) for template in entry.get("templates") or [default] if template)
            words[name] = {value: given.get(value, (grid_attribute(grid, name).phrase(value),)) for value in values}
        else:
            templates[name] = (default,) if default else ()
            words[name] = {value: (grid_attribute(grid, name).phrase(value),) for value in values}
        if not templates[name]:
            raise VerificationError(f"{path}: no templates for attribute {name!r} and no default_template")
    source = "zero_shot_prompts.yaml (shipped)" if path == ZERO_SHOT_PROMPTS_FILE else path.name
    return ZeroShotPrompts(templates, words, source)


def prompts_from_words(words: Mapping[str, Mapping[str, Sequence[str]]], templates: Sequence[str],
                       source: str) -> ZeroShotPrompts:
    """`ZeroShotPrompts` with the same `templates` for every attribute of `words` (attribute ->
    value -> words), e.g. the professions world's appearance vocabulary."""
    return ZeroShotPrompts({name: tuple(templates) for name in words},
                           {name: {value: _as_words(list(entry)) for value, entry in values.items()}
                            for name, values in words.items()}, source)  # fmt: skip
