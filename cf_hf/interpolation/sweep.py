"""The sweep-folder format: the one owner of how an α is named on disk, on the Hub and in results.

    output_dir/
      sweep.json            {"original", "finetuned", "fingerprints", "alphas": [{"alpha": 0.5, "path": "alpha-0.5"}, ...], ...}
      alpha-0/              a complete checkpoint + interpolation.json
      alpha-0.25/
      ...

An α is spelt `alpha-<α>` in folder and Hub branch names (`alpha_name`) and `alpha=<α>` in results
and tables (`alpha_key`), α in `%g` form. `interpolate_sweep` (`wise_ft.py`) writes this format;
`read_sweep` and `load_sweep` read it;
`member_weights` identifies one member's weights.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

SWEEP_FILE = "sweep.json"
INTERPOLATION_FILE = "interpolation.json"
ALPHA_FOLDER_PREFIX = "alpha-"
ALPHA_KEY_PREFIX = "alpha="


def alpha_name(alpha: float) -> str:
    """The sweep folder (and Hub branch) name of an alpha: `alpha-` + `%g` (`alpha-0.25`, `alpha-1`)."""
    return f"{ALPHA_FOLDER_PREFIX}{float(alpha):g}"


def alpha_key(alpha: float) -> str:
    """The results name of the sweep member with this α: `alpha=` + α in `%g` form (`alpha=0.25`)."""
    return f"{ALPHA_KEY_PREFIX}{float(alpha):g}"


def member_weights(folder: str | Path) -> dict | None:
    """What identifies the weights of a sweep member wherever its folder lies: `{"alpha", "fingerprints"}`,
    its α and the sha256 fingerprints of the endpoints it was mixed from (its interpolation.json; at α = 0
    the original's alone, at α = 1 the fine-tuned one's).
    None for a folder that is no sweep member, or whose record is unreadable or predates fingerprints.

    `cf-hf evaluate` records it beside each model it measured, so that `cf-hf push model` can tell
    whether a results file measured the pushed checkpoints after either folder moved or was deleted."""
    try:
        record = json.loads((Path(folder) / INTERPOLATION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, Mapping) or not isinstance(record.get("fingerprints"), Mapping):
        return None
    try:
        alpha = float(record.get("alpha"))
    except (TypeError, ValueError):
        return None
    # The weights are (1 - α)·original + α·fine-tuned: an endpoint with weight 0 does not change them.
    weights = {"original": 1.0 - alpha, "finetuned": alpha}
    fingerprints = {role: value for role, value in record["fingerprints"].items() if weights.get(role, 1.0) != 0.0}
    return {"alpha": alpha, "fingerprints": fingerprints}


def read_sweep(output_dir: str | Path) -> dict:
    """A sweep folder's sweep.json, with `checkpoints` = {alpha as `%g` string: absolute folder path},
    in increasing alpha (built from the `alphas` list of the shared contract)."""
    output_dir = Path(output_dir)
    path = output_dir / SWEEP_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{output_dir} is not an interpolation sweep (no {SWEEP_FILE})")
    sweep = json.loads(path.read_text())
    entries = sweep.get("alphas", [])
    if not all(isinstance(entry, Mapping) and "alpha" in entry and "path" in entry for entry in entries):
        raise ValueError(f"{path}: 'alphas' must list {{'alpha': ..., 'path': ...}} entries")
    sweep["checkpoints"] = {
        f"{float(entry['alpha']):g}": output_dir / entry["path"]
        for entry in sorted(entries, key=lambda entry: float(entry["alpha"]))
    }
    return sweep


def load_sweep(directory: str | Path) -> tuple[dict[str, Path], dict[str, float]]:
    """The checkpoints of an α sweep folder (`sweep.json` + `alpha-<α>/` checkpoint folders).

    `sweep.json` may list the α's (`"alphas": [...]`) or the checkpoints (`"checkpoints": [{"alpha":
    ..., "path": ...}]`, paths relative to the folder); otherwise every `alpha-<α>` folder is used.

    Returns:
        (name -> checkpoint folder, name -> α), names "alpha=<α>", in increasing α.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory}: no such sweep folder (the output_dir of `cf-hf interpolate`)")
    folders: dict[float, Path] = {}
    for path in directory.iterdir():
        if path.is_dir() and path.name.startswith(ALPHA_FOLDER_PREFIX):
            try:
                folders[float(path.name[len(ALPHA_FOLDER_PREFIX):])] = path
            except ValueError:
                continue
    manifest_path = directory / SWEEP_FILE
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{manifest_path}: not valid JSON ({error})") from None
        checkpoints = manifest.get("checkpoints") if isinstance(manifest, dict) else None
        if isinstance(checkpoints, Mapping):
            checkpoints = [{"alpha": alpha, "path": path} for alpha, path in checkpoints.items()]
        if isinstance(checkpoints, list):
            listed = {}
            for index, item in enumerate(checkpoints):
                if not isinstance(item, Mapping) or "alpha" not in item:
                    raise ValueError(f"{manifest_path}: checkpoints[{index}] needs an 'alpha'")
                alpha = float(item["alpha"])
                path = item.get("path") or item.get("dir") or item.get("folder")
                listed[alpha] = (directory / path) if path else folders.get(alpha)
            folders = listed
        elif isinstance(manifest, dict) and "alphas" in manifest:
            wanted = [float(alpha) for alpha in manifest["alphas"]]
            absent = [alpha for alpha in wanted if alpha not in folders]
            if absent:
                raise FileNotFoundError(f"{manifest_path}: no alpha-<α> folder for α = {absent}")
            folders = {alpha: folders[alpha] for alpha in wanted}
    if not folders:
        raise FileNotFoundError(f"{directory}: no alpha-<α> checkpoint folders and no usable sweep.json")
    for alpha, path in folders.items():
        if path is None or not (Path(path) / "config.json").is_file():
            raise FileNotFoundError(f"{directory}: α = {alpha:g}: {path} is not a checkpoint folder (no config.json)")
    ordered = sorted(folders)
    if any(math.isnan(alpha) for alpha in ordered):
        raise ValueError(f"{directory}: α must be a number")
    return ({alpha_key(alpha): Path(folders[alpha]) for alpha in ordered},
            {alpha_key(alpha): alpha for alpha in ordered})
