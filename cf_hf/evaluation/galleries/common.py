"""What the gallery loaders share: image files, required paths, line files, label-value files, age bins.

Every loader validates its input and names the file, row or column that is wrong; these helpers
raise the same errors for all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..sets import protocol_defaults

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# The sensitive attributes of the face sets: FairFace's label columns, which UTKFace's file names also carry.
FAIRFACE_ATTRIBUTES = ("gender", "race", "age")


def is_image(path: Path) -> bool:
    """Whether `path` is a file with an image suffix (`IMAGE_SUFFIXES`, any case)."""
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def require_file(path: Path, what: str) -> Path:
    """`path`, or FileNotFoundError naming it as a `what`."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what}")
    return path


def require_dir(path: Path, what: str) -> Path:
    """`path`, or NotADirectoryError naming it as a `what` folder."""
    if not path.is_dir():
        raise NotADirectoryError(f"{path}: no such {what} folder")
    return path


def read_lines(path: Path, what: str) -> list[str]:
    """The stripped lines of a text file (a `what`), without blank lines and `#` comments."""
    lines = [line.strip() for line in require_file(path, what).read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def age_bin(age: int, bins: Sequence | None = None) -> str:
    """The label of the age bin (default: FairFace's bins) that holds `age` in years."""
    for label, first, last in bins or protocol_defaults()["age_bins"]:
        if first <= age <= last:
            return str(label)
    raise ValueError(f"age {age} is in no age bin")


def read_label_values(path: str | Path) -> dict[str, list[str]]:
    """A label set from a YAML/JSON file mapping each attribute to its list of values.

    e.g. ``race: [White, Black, Asian]``: the values a labels file may hold for that attribute.
    """
    import yaml

    path = require_file(Path(path), "label set file")
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
