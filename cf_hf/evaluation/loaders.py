"""Loaders for the evaluation sets in the formats people have on disk. Nothing is downloaded.

* `load_fairface`: `fairface_label_val.csv`-style CSV (`file,age,gender,race,service_test`) + the
  image folder (either padding variant, 0.25 or 1.25).
* `load_utkface`: a folder of `age_gender_race_date.jpg` files (also `*.jpg.chip.jpg`).
* `load_pata`: `scene_race_gender_age|path` lines (`pata_fairness.files.lst`) + the captions JSON
  (`pata_fairness.captions.json`).
* `load_karpathy`: Flickr30k/COCO Karpathy-split JSON (`images[].filename`, `sentences[].raw`,
  `split`) + the image folder.
* `load_imagenet_folder`: a folder per class + class names + prompt templates.
* `load_hf_gallery` / `load_hf_retrieval` / `load_hf_zero_shot`: any `datasets` dataset with an
  image column and label/caption columns named as options.

Every loader validates its input and names the file, row or column that is wrong.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlparse

from .sets import (
    AttributeGallery,
    DatasetImages,
    Query,
    RetrievalSet,
    ZeroShotSet,
    check_templates,
    protocol_defaults,
)

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
FAIRFACE_ATTRIBUTES = ("gender", "race", "age")
FAIRFACE_DEFAULT_CSV = "fairface_label_val.csv"
# age_gender_race_date
UTKFACE_FIELDS = 4
PATA_ATTRIBUTES = ("race", "gender", "age")
# ImageNet class folders named by WordNet id, and the lines of LOC_synset_mapping.txt.
WORDNET_ID = re.compile(r"n\d{8}")
WORDNET_MAPPING_LINE = re.compile(r"(?P<wnid>n\d{8})\s+(?P<names>\S.*)")
# PATA's captions JSON calls the race attribute "races".
PATA_CAPTION_KEYS = {"races": "race", "race": "race", "gender": "gender", "age": "age"}


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what}")
    return path


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise NotADirectoryError(f"{path}: no such {what} folder")
    return path


def age_bin(age: int, bins: Sequence | None = None) -> str:
    """The label of the age bin (default: FairFace's bins) that holds `age` in years."""
    for label, first, last in bins or protocol_defaults()["age_bins"]:
        if first <= age <= last:
            return str(label)
    raise ValueError(f"age {age} is in no age bin")


# ---------------------------------------------------------------------------------------------
# FairFace


def _fairface_image_base(root: Path, first_file: str, padding: str | None) -> Path:
    folders = {str(key): value for key, value in protocol_defaults()["fairface_padding_folders"].items()}
    if padding is not None:
        padding = str(padding)
        if padding not in folders:
            raise ValueError(f"padding={padding!r} is not a FairFace variant: use one of {sorted(folders)}")
        if root.name == folders[padding]:
            return root
        return _require_dir(root / folders[padding], f"FairFace padding={padding} image")
    present = [variant for variant, folder in folders.items() if (root / folder).is_dir()]
    if len(present) > 1:
        raise ValueError(
            f"{root} holds both FairFace image variants ({', '.join(folders[v] for v in present)}): "
            "choose one with padding='0.25' or padding='1.25' (--fairface_padding)"
        )
    candidates = [root] + [root / folders[variant] for variant in present]
    for base in candidates:
        if (base / first_file).is_file():
            return base
    raise FileNotFoundError(
        f"FairFace images not found: {first_file!r} (first row of the CSV) is in none of "
        f"{[str(base) for base in candidates]}; point the image folder at the directory that holds "
        "the CSV's `file` paths (it contains train/ and val/)"
    )


def fairface_label_values() -> dict[str, list[str]]:
    """FairFace's label values per attribute: gender, race (`defaults.yaml`) and the age bins."""
    defaults = protocol_defaults()
    labels = {attribute: [str(value) for value in values] for attribute, values in defaults["fairface_labels"].items()}
    labels["age"] = [str(label) for label, _, _ in defaults["age_bins"]]
    return labels


def read_label_values(path: str | Path) -> dict[str, list[str]]:
    """A label set from a YAML/JSON file mapping each attribute to its list of values.

    e.g. ``race: [White, Black, Asian]``: the values a labels file may hold for that attribute.
    """
    import yaml

    path = _require_file(Path(path), "label set file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML/JSON ({error})") from None
    if not isinstance(data, dict) or not data or not all(
        isinstance(values, list) and values and all(isinstance(value, (str, int)) for value in values)
        for values in data.values()
    ):
        raise ValueError(f"{path}: expected a mapping attribute -> list of label values, e.g. 'race: [White, Black]'")
    return {str(attribute): [str(value) for value in values] for attribute, values in data.items()}


def _check_label_values(
    csv_path: Path, rows: list[dict], attributes: Sequence[str], known: Mapping[str, Sequence[str]], custom: Sequence[str]
) -> None:
    for attribute in attributes:
        if attribute not in known:
            continue
        allowed = set(known[attribute])
        unknown = [(index + 2, row[attribute].strip()) for index, row in enumerate(rows)
                   if row[attribute].strip() not in allowed]
        if unknown:
            line, value = unknown[0]
            distinct = sorted({value for _, value in unknown})
            where = "the given label set" if attribute in custom else "FairFace"
            raise ValueError(
                f"{csv_path}: line {line}: column {attribute!r} holds {value!r}, which is not a {attribute} "
                f"label of {where} ({list(known[attribute])}); {len(unknown)} row(s) hold unknown values "
                f"{distinct[:10]}{' ...' if len(distinct) > 10 else ''}. If the CSV uses its own labels, name "
                "them: label_values={attribute: [values]} / --fairface_labels FILE (YAML/JSON 'attribute: "
                "[values]')"
            )


def load_fairface(
    root: str | Path,
    csv_path: str | Path | None = None,
    padding: str | None = None,
    attributes: Sequence[str] = FAIRFACE_ATTRIBUTES,
    skip_missing: bool = False,
    name: str = "fairface",
    label_values: Mapping[str, Sequence[str]] | str | Path | None = None,
) -> AttributeGallery:
    """FairFace: a labels CSV + the image folder.

    Args:
        root: the folder that holds the images, either directly (`root/val/1.jpg`) or inside a
            padding variant folder (`root/fairface-img-margin025-trainval/val/1.jpg`).
        csv_path: the labels CSV (default: `root/fairface_label_val.csv`).
        padding: "0.25" or "1.25": which variant folder to use when both are present.
        attributes: label columns to keep as sensitive attributes.
        skip_missing: skip rows whose image file is missing instead of raising.
        label_values: the allowed values of some attributes (a mapping attribute -> values, or a
            YAML/JSON file of one), replacing FairFace's own sets (`fairface_label_values`) for
            those attributes. A value outside the allowed set is an error naming its line, so that a
            typo or a foreign label never becomes a group of its own.
    """
    root = _require_dir(Path(root), "FairFace")
    csv_path = Path(csv_path) if csv_path is not None else root / FAIRFACE_DEFAULT_CSV
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"{csv_path}: no such FairFace labels CSV; pass csv_path (--fairface_csv) to the "
            "fairface_label_val.csv (or _train.csv) file"
        )
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = [column.strip() for column in (reader.fieldnames or [])]
        reader.fieldnames = columns
        missing = [column for column in ("file", *attributes) if column not in columns]
        if missing:
            raise ValueError(f"{csv_path}: missing column(s) {missing}; the header has {columns}")
        rows = list(reader)
    if not rows:
        raise ValueError(f"{csv_path}: no rows")
    for index, row in enumerate(rows):
        line = index + 2  # the header is line 1
        for column in ("file", *attributes):
            if row.get(column) is None or not row[column].strip():
                raise ValueError(f"{csv_path}: line {line}: column {column!r} is empty")
    if isinstance(label_values, (str, Path)):
        label_values = read_label_values(label_values)
    _check_label_values(csv_path, rows, attributes, {**fairface_label_values(), **(label_values or {})},
                        custom=list(label_values or ()))
    base = _fairface_image_base(root, rows[0]["file"].strip(), padding)
    images, labels, skipped = [], {attribute: [] for attribute in attributes}, []
    for index, row in enumerate(rows):
        path = base / row["file"].strip()
        if not path.is_file():
            if skip_missing:
                skipped.append(str(path))
                continue
            raise FileNotFoundError(
                f"{csv_path}: line {index + 2}: image {row['file']!r} not found at {path} "
                "(skip_missing=True / --skip_missing skips such rows)"
            )
        images.append(str(path))
        for attribute in attributes:
            labels[attribute].append(row[attribute].strip())
    if not images:
        raise ValueError(f"{csv_path}: none of the {len(rows)} images exist under {base}")
    source = f"FairFace {csv_path.name}, images from {base}"
    if skipped:
        source += f" ({len(skipped)} rows skipped: image missing)"
    return AttributeGallery(images=images, attributes=labels, name=name, source=source)


# ---------------------------------------------------------------------------------------------
# UTKFace


class _MissingUTKFaceField(ValueError):
    """A file name of the public archive with a field missing (`age_gender_date`)."""


def _parse_utkface_name(path: Path, gender_codes: dict, race_codes: dict, age_bins) -> dict:
    stem = path.name.split(".")[0]
    parts = stem.split("_")
    expected = "expected age_gender_race_date.jpg with integer codes"
    if len(parts) == UTKFACE_FIELDS - 1 and all(part.isdigit() for part in parts):
        raise _MissingUTKFaceField(f"{path.name}: a field is missing ({stem!r})")
    if len(parts) != UTKFACE_FIELDS:
        raise ValueError(f"{path.name}: {expected} (found {len(parts)} fields in {stem!r})")
    try:
        age, gender, race = int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        raise ValueError(f"{path.name}: {expected} (got {parts[:3]})") from None
    if gender not in gender_codes:
        raise ValueError(f"{path.name}: gender code {gender} is not one of {sorted(gender_codes)}")
    if race not in race_codes:
        raise ValueError(f"{path.name}: race code {race} is not one of {sorted(race_codes)}")
    return {"age": age_bin(age, age_bins), "gender": gender_codes[gender], "race": race_codes[race]}


def load_utkface(
    root: str | Path,
    attributes: Sequence[str] = FAIRFACE_ATTRIBUTES,
    age_bins: Sequence | None = None,
    skip_malformed: bool = False,
    name: str = "utkface",
) -> AttributeGallery:
    """UTKFace: labels parsed from the file names `age_gender_race_date.jpg` (searched recursively).

    Gender 0/1 -> Male/Female, race 0-4 -> White/Black/Asian/Indian/Others, ages binned into
    FairFace's bins (or `age_bins`: [label, first, last] triples) so that galleries compare.
    The public archive holds a few files with three numeric fields (one is missing, which one is
    unknown): they are always skipped, and counted in the gallery's `source`. Any other malformed
    name is an error unless `skip_malformed=True` (`--skip_missing`), which skips and counts it.
    """
    root = _require_dir(Path(root), "UTKFace")
    defaults = protocol_defaults()
    gender_codes = {int(code): value for code, value in defaults["utkface_gender"].items()}
    race_codes = {int(code): value for code, value in defaults["utkface_race"].items()}
    unknown = [attribute for attribute in attributes if attribute not in FAIRFACE_ATTRIBUTES]
    if unknown:
        raise ValueError(f"UTKFace file names only carry {FAIRFACE_ATTRIBUTES}, not {unknown}")
    files = sorted(path for path in root.rglob("*") if _is_image(path))
    if not files:
        raise ValueError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    images, labels, missing_field, skipped = [], {attribute: [] for attribute in attributes}, [], []
    for path in files:
        try:
            parsed = _parse_utkface_name(path, gender_codes, race_codes, age_bins)
        except _MissingUTKFaceField:
            missing_field.append(path.name)
            continue
        except ValueError as error:
            if skip_malformed:
                skipped.append(path.name)
                continue
            raise ValueError(f"{root}: {error} (skip_malformed=True / --skip_missing skips such files)") from None
        images.append(str(path))
        for attribute in attributes:
            labels[attribute].append(parsed[attribute])
    if not images:
        raise ValueError(f"{root}: none of the {len(files)} file names parse as age_gender_race_date.jpg")
    source = f"UTKFace {root}"
    notes = [f"{len(missing_field)} file names with a missing field skipped"] if missing_field else []
    notes += [f"{len(skipped)} malformed file names skipped"] if skipped else []
    if notes:
        logger.warning("UTKFace %s: %s (e.g. %s)", root, "; ".join(notes), (missing_field + skipped)[0])
        source += f" ({'; '.join(notes)})"
    return AttributeGallery(images=images, attributes=labels, name=name, source=source)


# ---------------------------------------------------------------------------------------------
# PATA


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
    files_list = _require_file(Path(files_list), "PATA files list")
    image_root = _require_dir(Path(image_root), "PATA image") if image_root is not None else files_list.parent
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
    queries = _pata_queries(_require_file(Path(captions), "PATA captions JSON"), scenes) if captions else None
    source = f"PATA {files_list.name}" + (f" + {Path(captions).name}" if captions else "")
    if skipped:
        source += f" ({len(skipped)} lines skipped: image missing)"
    return AttributeGallery(images=images, attributes=labels, concepts=concepts, queries=queries, name=name, source=source)


# ---------------------------------------------------------------------------------------------
# Flickr30k / COCO (Karpathy split)


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
    json_path = _require_file(Path(json_path), "Karpathy-split JSON")
    image_root = _require_dir(Path(image_root), "retrieval image")
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


# ---------------------------------------------------------------------------------------------
# ImageNet-style folders


def _read_lines(path: Path, what: str) -> list[str]:
    lines = [line.strip() for line in _require_file(path, what).read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


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
                class_names = json.loads(_require_file(path, "class names file").read_text(encoding="utf-8"))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}: not valid JSON ({error})") from None
        else:
            lines = _read_lines(path, "class names file")
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
    root = _require_dir(Path(root), "ImageNet-style")
    folders = sorted(path for path in root.iterdir() if path.is_dir())
    if len(folders) < 2:
        raise ValueError(f"{root}: expected one folder per class, found {len(folders)} folder(s)")
    images, labels = [], []
    for label, folder in enumerate(folders):
        files = sorted(path for path in folder.iterdir() if _is_image(path))
        if not files:
            raise ValueError(f"{folder}: class folder holds no image ({', '.join(IMAGE_SUFFIXES)})")
        images += [str(path) for path in files]
        labels += [label] * len(files)
    names = _class_names(class_names, [folder.name for folder in folders], root)
    if isinstance(templates, (str, Path)):
        templates = check_templates(_read_lines(Path(templates), "templates file"), str(templates))
    return ZeroShotSet(
        images=images, labels=labels, class_names=names, templates=templates, name=name,
        source=f"{root} ({len(folders)} classes)",
    )


# ---------------------------------------------------------------------------------------------
# `datasets` datasets


def _open_dataset(dataset, split: str | None):
    import datasets

    if isinstance(dataset, (str, Path)):
        path = Path(dataset)
        if path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file()):
            dataset = datasets.load_from_disk(str(path))
        else:
            dataset = datasets.load_dataset(str(dataset), split=split)
    if isinstance(dataset, (datasets.DatasetDict, dict)):
        splits = list(dataset)
        if split is None and len(splits) == 1:
            split = splits[0]
        if split not in dataset:
            raise ValueError(f"choose a split: split={split!r} is not one of {splits}")
        dataset = dataset[split]
    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(f"expected a datasets.Dataset (or a path/name to load), got {type(dataset).__name__}")
    return dataset


def _check_columns(dataset, columns: Sequence[str], option: str) -> None:
    missing = [column for column in columns if column not in dataset.column_names]
    if missing:
        raise ValueError(f"{option}: column(s) {missing} not in the dataset; its columns are {dataset.column_names}")


def _label_column(dataset, column: str) -> list:
    import datasets

    values = list(dataset.select_columns([column])[column])
    feature = dataset.features[column]
    for row, value in enumerate(values):
        if value is None or value != value:  # None, or NaN (NaN != NaN)
            raise ValueError(f"column {column!r}: row {row} has no value ({value!r})")
    if isinstance(feature, datasets.ClassLabel):
        return [feature.int2str(int(value)) for value in values]
    return values


def load_hf_gallery(
    dataset,
    attribute_columns: Sequence[str],
    image_column: str = "image",
    concept_column: str | None = None,
    split: str | None = None,
    name: str | None = None,
) -> AttributeGallery:
    """Any `datasets` dataset (object, local folder, or Hub name) as an attribute gallery.

    Args:
        attribute_columns: the sensitive-attribute columns (ClassLabel ids become their names).
        image_column: the `Image` column, decoded lazily one batch at a time.
        concept_column: optional concept of each image (for worst-group recall).
    """
    if not attribute_columns:
        raise ValueError("attribute_columns: name at least one sensitive-attribute column")
    dataset = _open_dataset(dataset, split)
    _check_columns(dataset, [image_column], "image_column")
    _check_columns(dataset, list(attribute_columns), "attribute_columns")
    if concept_column is not None:
        _check_columns(dataset, [concept_column], "concept_column")
    attributes = {column: _label_column(dataset, column) for column in attribute_columns}
    concepts = _label_column(dataset, concept_column) if concept_column else None
    title = name or getattr(dataset.info, "dataset_name", None) or "hf_gallery"
    return AttributeGallery(
        images=DatasetImages(dataset, image_column), attributes=attributes, concepts=concepts, name=title,
        source=f"datasets dataset {title!r} ({len(dataset)} rows)",
    )


def load_hf_retrieval(
    dataset, caption_column: str = "caption", image_column: str = "image", split: str | None = None,
    name: str | None = None,
) -> RetrievalSet:
    """A `datasets` dataset with an image column and a caption column (a string or a list per row)."""
    dataset = _open_dataset(dataset, split)
    _check_columns(dataset, [image_column, caption_column], "image_column/caption_column")
    captions = _label_column(dataset, caption_column)
    title = name or getattr(dataset.info, "dataset_name", None) or "hf_retrieval"
    return RetrievalSet(images=DatasetImages(dataset, image_column), captions=captions, name=title,
                        source=f"datasets dataset {title!r}")


def load_hf_zero_shot(
    dataset, label_column: str = "label", image_column: str = "image", class_names: Sequence[str] | None = None,
    templates: Sequence[str] | None = None, attribute_columns: Sequence[str] = (), split: str | None = None,
    name: str | None = None,
) -> ZeroShotSet:
    """A `datasets` dataset with an image column and a class-label column.

    Class names come from the column's `ClassLabel` feature unless given.
    """
    import datasets

    dataset = _open_dataset(dataset, split)
    _check_columns(dataset, [image_column, label_column, *attribute_columns], "image/label/attribute columns")
    feature = dataset.features[label_column]
    labels = list(dataset.select_columns([label_column])[label_column])
    if class_names is None:
        if not isinstance(feature, datasets.ClassLabel):
            raise ValueError(f"column {label_column!r} is not a ClassLabel: pass class_names")
        class_names = feature.names
    attributes = {column: _label_column(dataset, column) for column in attribute_columns} or None
    title = name or getattr(dataset.info, "dataset_name", None) or "hf_zero_shot"
    return ZeroShotSet(images=DatasetImages(dataset, image_column), labels=labels, class_names=list(class_names),
                       templates=templates, attributes=attributes, name=title, source=f"datasets dataset {title!r}")
