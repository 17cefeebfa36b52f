"""The attribute prompts file (`attribute_prompts.yaml`) of the methods that read attribute words: the
closed-form projection (group prototypes) and BendVLM (attribute prompts, attribute-augmented queries)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cf_hf.methods.linear import MethodError

PROMPTS_FILE = Path(__file__).with_name("attribute_prompts.yaml")
PROMPTS_FORMAT = "cf_hf-attribute-prompts"
QUERY_FIELD = "{query}"


def value_key(value: str) -> str:
    """How a gallery's value name matches the file's: case, spaces, hyphens and underscores aside
    (FairFace's `Female` and `East Asian` match the file's `female` and `East_Asian`)."""
    return str(value).strip().lower().replace(" ", "_").replace("-", "_")


@dataclass(frozen=True)
class AttributePrompts:
    """The prompts of one attribute.

    Attributes:
        attribute: its name (`gender`).
        values: its values, in the order the methods index them (the gallery's value names).
        words: value -> the word the prompts use.
        prototype_prompts: value -> its prompts ("a photo of a female person.", ...).
        query_templates: (prefix, suffix) pairs with a `{value}` field: an augmented query is
            `prefix + query + suffix` with the value's word filled in.
        source: the file they came from.
    """

    attribute: str
    values: tuple[str, ...]
    words: dict[str, str]
    prototype_prompts: dict[str, tuple[str, ...]]
    query_templates: tuple[tuple[str, str], ...]
    source: str

    def augmented(self, query: str, value: str) -> list[str]:
        """The attribute-augmented versions of `query` for `value`, one per query template."""
        word = self.words[value]
        return [prefix.format(value=word) + query + suffix.format(value=word) for prefix, suffix in self.query_templates]


def load_attribute_prompts(attribute: str, path: str | Path | None = None,
                           values: Sequence[str] | None = None) -> AttributePrompts:
    """The prompts of `attribute` from the prompts file (default: the shipped `attribute_prompts.yaml`).

    Args:
        attribute: an attribute of the file (`gender`, `race`, `age` in the shipped one).
        values: the attribute values to use, e.g. those a reference set holds, under the set's names
            (default: all of the file's); each must match one of the file's (`value_key`), and at least two
            are needed.
    """
    from cf_hf.concepts import read_data_file

    path = Path(path) if path is not None else PROMPTS_FILE
    data = read_data_file(path, PROMPTS_FORMAT)
    known = data.get("attributes") or {}
    if attribute not in known:
        raise MethodError(f"{path}: no attribute {attribute!r}; the file has {sorted(known)}")
    words = {str(key): str(value) for key, value in known[attribute].items()}
    if values is not None:
        values = [str(value) for value in values]
        by_key = {value_key(name): word for name, word in words.items()}
        missing = [value for value in values if value_key(value) not in by_key]
        if missing:
            raise MethodError(f"{path}: attribute {attribute!r} has no prompts for the value(s) {missing}; it has "
                              f"{sorted(words)} (add them to the file or pass your own)")
        words = {value: by_key[value_key(value)] for value in values}
    if len(words) < 2:
        raise MethodError(f"attribute {attribute!r} needs at least two values to debias, has {sorted(words)}")
    templates = [str(template) for template in data.get("prototype_templates") or []]
    if not templates or any("{value}" not in template for template in templates):
        raise MethodError(f"{path}: prototype_templates must be a non-empty list, each with a {{value}} field")
    query_templates = []
    for template in data.get("query_templates") or []:
        template = str(template)
        if template.count(QUERY_FIELD) != 1 or "{value}" not in template:
            raise MethodError(f"{path}: query template {template!r} needs one {QUERY_FIELD} and a {{value}} field")
        prefix, suffix = template.split(QUERY_FIELD)
        query_templates.append((prefix, suffix))
    if not query_templates:
        raise MethodError(f"{path}: query_templates must be a non-empty list")
    prompts = {value: tuple(template.format(value=word) for template in templates) for value, word in words.items()}
    return AttributePrompts(attribute=attribute, values=tuple(words), words=words, prototype_prompts=prompts,
                            query_templates=tuple(query_templates), source=path.name)
