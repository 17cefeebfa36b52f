"""UTKFace: a folder of `age_gender_race_date.jpg` files (also `*.jpg.chip.jpg`), labels parsed from
the file names."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from ..sets import AttributeGallery, protocol_defaults
from .common import FAIRFACE_ATTRIBUTES, IMAGE_SUFFIXES, age_bin, is_image, require_dir

logger = logging.getLogger(__name__)

# age_gender_race_date
UTKFACE_FIELDS = 4


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
    root = require_dir(Path(root), "UTKFace")
    defaults = protocol_defaults()
    gender_codes = {int(code): value for code, value in defaults["utkface_gender"].items()}
    race_codes = {int(code): value for code, value in defaults["utkface_race"].items()}
    unknown = [attribute for attribute in attributes if attribute not in FAIRFACE_ATTRIBUTES]
    if unknown:
        raise ValueError(f"UTKFace file names only carry {FAIRFACE_ATTRIBUTES}, not {unknown}")
    files = sorted(path for path in root.rglob("*") if is_image(path))
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
