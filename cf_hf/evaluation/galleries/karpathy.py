"""Flickr30k / COCO: a Karpathy-split JSON (`images[].filename`, `sentences[].raw`, `split`) + the image
folder."""

from __future__ import annotations

import json
from pathlib import Path

from ..sets import RetrievalSet
from .common import require_dir, require_file


def load_karpathy(
    json_path: str | Path,
    image_root: str | Path,
    split: str = "test",
    name: str | None = None,
) -> RetrievalSet:
    """A Karpathy-split JSON (`dataset_flickr30k.json`, `dataset_coco.json`) + the image folder.

    Each `images[i]` needs `filename`, `split` and `sentences[].raw`; COCO's `filepath`
    (e.g. `val2014`) is joined before the file name when present.
    """
    json_path = require_file(Path(json_path), "Karpathy-split JSON")
    image_root = require_dir(Path(image_root), "retrieval image")
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{json_path}: not valid JSON ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{json_path}: expected an object with an 'images' list (Karpathy split format)")
    images, captions, splits = [], [], set()
    for index, entry in enumerate(data["images"]):
        where = f"{json_path}: images[{index}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected an object")
        for key in ("filename", "split", "sentences"):
            if key not in entry:
                raise ValueError(f"{where}: missing {key!r}")
        splits.add(entry["split"])
        if entry["split"] != split:
            continue
        sentences = entry["sentences"]
        if not isinstance(sentences, list) or not sentences:
            raise ValueError(f"{where}: 'sentences' must be a non-empty list")
        texts = []
        for number, sentence in enumerate(sentences):
            raw = sentence.get("raw") if isinstance(sentence, dict) else None
            if not isinstance(raw, str) or not raw.strip():
                raise ValueError(f"{where}: sentences[{number}] has no 'raw' text")
            texts.append(raw.strip())
        path = image_root / entry.get("filepath", "") / entry["filename"]
        if not path.is_file():
            raise FileNotFoundError(f"{where}: image {entry['filename']!r} not found at {path}")
        images.append(str(path))
        captions.append(texts)
    if not images:
        raise ValueError(f"{json_path}: no image in split {split!r} (splits present: {sorted(splits)})")
    dataset = data.get("dataset", json_path.stem)
    return RetrievalSet(
        images=images, captions=captions, name=name or str(dataset), source=f"{json_path.name} split={split}"
    )
