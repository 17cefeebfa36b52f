"""ImageNet-style folders: a folder per class + class names + prompt templates."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from ..sets import ZeroShotSet, check_templates
from .common import IMAGE_SUFFIXES, is_image, read_lines, require_dir, require_file

# ImageNet class folders named by WordNet id, and the lines of LOC_synset_mapping.txt.
WORDNET_ID = re.compile(r"n\d{8}")
WORDNET_MAPPING_LINE = re.compile(r"(?P<wnid>n\d{8})\s+(?P<names>\S.*)")


def _synset_mapping(lines: list[str]) -> dict[str, str] | None:
    """`LOC_synset_mapping.txt` lines ("n01440764 tench, Tinca tinca") as WordNet id -> first name;
    None when the lines are not in that format."""
    matches = [WORDNET_MAPPING_LINE.fullmatch(line) for line in lines]
    if not lines or not all(matches):
        return None
    return {match["wnid"]: match["names"].split(",")[0].strip() for match in matches}


def _class_names(class_names, folders: list[str], root: Path) -> list[str]:
    if class_names is None:
        wordnet = [folder for folder in folders if WORDNET_ID.fullmatch(folder)]
        if wordnet:
            raise ValueError(
                f"{root}: the class folders are named by WordNet ids ({', '.join(wordnet[:3])}"
                f"{', ...' if len(wordnet) > 3 else ''}); prompts need class names. Pass class_names "
                "(--imagenet_classes): LOC_synset_mapping.txt ('n01440764 tench, Tinca tinca' lines), a JSON "
                "object id -> name, or one name per line in sorted folder order"
            )
        return [folder.replace("_", " ") for folder in folders]
    if isinstance(class_names, (str, Path)):
        path = Path(class_names)
        if path.suffix.lower() == ".json":
            try:
                class_names = json.loads(require_file(path, "class names file").read_text(encoding="utf-8"))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}: not valid JSON ({error})") from None
        else:
            lines = read_lines(path, "class names file")
            class_names = _synset_mapping(lines) or lines
        source = str(path)
    else:
        source = "class_names"
    if isinstance(class_names, dict):
        missing = [folder for folder in folders if folder not in class_names]
        if missing:
            raise ValueError(f"{source}: no class name for the folder(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        return [str(class_names[folder]) for folder in folders]
    names = list(class_names)
    if len(names) != len(folders):
        raise ValueError(
            f"{source}: {len(names)} class names for {len(folders)} class folders; give one name per "
            "folder in sorted folder order, or a JSON object folder -> name"
        )
    return [str(name) for name in names]


def load_imagenet_folder(
    root: str | Path,
    class_names: str | Path | Sequence[str] | dict | None = None,
    templates: str | Path | Sequence[str] | None = None,
    name: str = "imagenet",
) -> ZeroShotSet:
    """An ImageNet-style folder per class (`root/<class folder>/*.JPEG`).

    Args:
        class_names: names in sorted-folder order (a list, a text file with one per line, or a JSON
            list), or a JSON object / dict folder -> name, or ImageNet's `LOC_synset_mapping.txt`
            (WordNet id and names per line; the first name is used); default: the folder names,
            except WordNet ids (`n01440764`), which are not names: such folders require class_names.
        templates: prompt templates (a list or a text file, one per line, with `{}` or
            `{concept}`); default: the shipped 7-template ensemble.
    """
    root = require_dir(Path(root), "ImageNet-style")
    folders = sorted(path for path in root.iterdir() if path.is_dir())
    if len(folders) < 2:
        raise ValueError(f"{root}: expected one folder per class, found {len(folders)} folder(s)")
    images, labels = [], []
    for label, folder in enumerate(folders):
        files = sorted(path for path in folder.iterdir() if is_image(path))
        if not files:
            raise ValueError(f"{folder}: class folder holds no image ({', '.join(IMAGE_SUFFIXES)})")
        images += [str(path) for path in files]
        labels += [label] * len(files)
    names = _class_names(class_names, [folder.name for folder in folders], root)
    if isinstance(templates, (str, Path)):
        templates = check_templates(read_lines(Path(templates), "templates file"), str(templates))
    return ZeroShotSet(
        images=images, labels=labels, class_names=names, templates=templates, name=name,
        source=f"{root} ({len(folders)} classes)",
    )
