"""PATA: `scene_race_gender_age|path` lines (`pata_fairness.files.lst`) + the captions JSON
(`pata_fairness.captions.json`)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

from ..sets import AttributeGallery, Query
from .common import require_dir, require_file

PATA_ATTRIBUTES = ("race", "gender", "age")
# PATA's captions JSON calls the race attribute "races".
PATA_CAPTION_KEYS = {"races": "race", "race": "race", "gender": "gender", "age": "age"}


def _scene_key(scene: str) -> str:
    return " ".join(scene.replace("_", " ").split()).lower()


def _resolve_pata_path(token: str, image_root: Path) -> Path:
    if urlparse(token).scheme in {"http", "https"}:
        return image_root / Path(urlparse(token).path).name
    path = Path(token)
    return path if path.is_absolute() else image_root / path


def _pata_queries(captions_path: Path, scenes: dict[str, str]) -> list[Query]:
    try:
        entries = json.loads(captions_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{captions_path}: not valid JSON ({error})") from None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{captions_path}: expected a non-empty list of scene entries")
    by_key: dict[tuple, set[str]] = {}
    order: list[tuple] = []
    for index, entry in enumerate(entries):
        where = f"{captions_path}: entry {index}"
        if not isinstance(entry, dict) or not isinstance(entry.get("short"), str):
            raise ValueError(f"{where}: expected an object with a 'short' scene name")
        concept = scenes.get(_scene_key(entry["short"]), _scene_key(entry["short"]))
        for polarity in ("pos", "neg"):
            block = entry.get(polarity, {})
            if not isinstance(block, dict):
                raise ValueError(f"{where}: {polarity!r} must map an attribute to a list of captions")
            for key, captions in block.items():
                if key not in PATA_CAPTION_KEYS:
                    raise ValueError(f"{where}: {polarity}.{key}: unknown attribute (use {sorted(PATA_CAPTION_KEYS)})")
                if not isinstance(captions, list) or not all(isinstance(text, str) and text.strip() for text in captions):
                    raise ValueError(f"{where}: {polarity}.{key}: expected a list of non-empty captions")
                for text in captions:
                    query_key = (text.strip(), concept, polarity)
                    if query_key not in by_key:
                        by_key[query_key] = set()
                        order.append(query_key)
                    by_key[query_key].add(PATA_CAPTION_KEYS[key])
    if not order:
        raise ValueError(f"{captions_path}: no captions")
    return [
        Query(text=text, concept=concept, attributes=tuple(sorted(by_key[(text, concept, polarity)])), polarity=polarity)
        for text, concept, polarity in order
    ]


def load_pata(
    files_list: str | Path,
    captions: str | Path | None = None,
    image_root: str | Path | None = None,
    skip_missing: bool = False,
    name: str = "pata",
) -> AttributeGallery:
    """PATA: `scene_race_gender_age|path` lines + optionally the captions JSON.

    Args:
        files_list: the list file (`pata_fairness.files.lst`). A scene may contain underscores
            (`gun_range`): the three last fields are the attributes.
        captions: the captions JSON (a list of {"short": scene, "pos": {attribute: [captions]},
            "neg": {...}}); each caption becomes a query of its scene, evaluated on the attributes
            it is listed under. Without it the protocol's templates x concepts are used.
        image_root: folder the paths are relative to (default: the list's folder). A URL path is
            looked up by its file name in this folder.
        skip_missing: skip lines whose image is missing instead of raising.
    """
    files_list = require_file(Path(files_list), "PATA files list")
    image_root = require_dir(Path(image_root), "PATA image") if image_root is not None else files_list.parent
    images, concepts, skipped = [], [], []
    labels: dict[str, list] = {attribute: [] for attribute in PATA_ATTRIBUTES}
    scenes: dict[str, str] = {}
    for line_number, line in enumerate(files_list.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        label, separator, token = line.strip().partition("|")
        fields = label.rsplit("_", 3)
        if not separator or not token.strip() or len(fields) != 4 or not all(fields):
            raise ValueError(f"{files_list}: line {line_number}: expected 'scene_race_gender_age|path', got {line.strip()!r}")
        path = _resolve_pata_path(token.strip(), image_root)
        if not path.is_file():
            if skip_missing:
                skipped.append(str(path))
                continue
            raise FileNotFoundError(
                f"{files_list}: line {line_number}: image not found at {path} "
                "(skip_missing=True / --skip_missing skips such lines)"
            )
        scene = _scene_key(fields[0])
        scenes.setdefault(scene, scene)
        images.append(str(path))
        concepts.append(scene)
        for attribute, value in zip(PATA_ATTRIBUTES, fields[1:]):
            labels[attribute].append(value)
    if not images:
        raise ValueError(f"{files_list}: no images")
    queries = _pata_queries(require_file(Path(captions), "PATA captions JSON"), scenes) if captions else None
    source = f"PATA {files_list.name}" + (f" + {Path(captions).name}" if captions else "")
    if skipped:
        source += f" ({len(skipped)} lines skipped: image missing)"
    return AttributeGallery(images=images, attributes=labels, concepts=concepts, queries=queries, name=name, source=source)
