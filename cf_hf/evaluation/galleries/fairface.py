"""FairFace: a `fairface_label_val.csv`-style CSV (`file,age,gender,race,service_test`) + the image
folder (either padding variant, 0.25 or 1.25)."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..sets import AttributeGallery, protocol_defaults
from .common import FAIRFACE_ATTRIBUTES, read_label_values, require_dir

FAIRFACE_DEFAULT_CSV = "fairface_label_val.csv"


def _fairface_image_base(root: Path, first_file: str, padding: str | None) -> Path:
    folders = {str(key): value for key, value in protocol_defaults()["fairface_padding_folders"].items()}
    if padding is not None:
        padding = str(padding)
        if padding not in folders:
            raise ValueError(f"padding={padding!r} is not a FairFace variant: use one of {sorted(folders)}")
        if root.name == folders[padding]:
            return root
        return require_dir(root / folders[padding], f"FairFace padding={padding} image")
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


def _check_duplicate_files(csv_path: Path, rows: list[dict]) -> None:
    """Refuse rows that name the same image twice: the image would be counted twice in every ranking."""
    first_line: dict[str, int] = {}
    duplicates = []
    for index, row in enumerate(rows):
        file = row["file"].strip()
        if file in first_line:
            duplicates.append((first_line[file], index + 2, file))
        else:
            first_line[file] = index + 2
    if duplicates:
        shown = "; ".join(f"lines {first} and {line}: {file!r}" for first, line, file in duplicates[:5])
        raise ValueError(f"{csv_path}: {len(duplicates)} row(s) repeat an image ({shown}"
                         f"{' ...' if len(duplicates) > 5 else ''}): each image must be listed once")


def _check_label_values(
    csv_path: Path, rows: list[dict], attributes: Sequence[str], known: Mapping[str, Sequence[str]], custom: Sequence[str]
) -> None:
    for attribute in attributes:
        if attribute not in known:
            values = sorted({row[attribute].strip() for row in rows})
            raise ValueError(
                f"{csv_path}: column {attribute!r} is not a FairFace attribute and no label set names its values "
                f"({values[:10]}{' ...' if len(values) > 10 else ''}): name them, label_values={{{attribute!r}: "
                "[values]}} / --fairface_labels FILE, so that a typo never becomes a group of its own")
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
    root = require_dir(Path(root), "FairFace")
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
    _check_duplicate_files(csv_path, rows)
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
