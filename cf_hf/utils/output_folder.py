"""A folder a `cf-hf` command may write: one rule for every command that writes a folder.

A command claims its output folder before any work:

```python
folder = claim_output_folder(args.output_dir, "train", settings, owned=TRAINER_OUTPUTS,
                             overwrite=args.overwrite, resume=resuming)
```

- a missing or empty folder is created and marked (`MARKER_NAME`: which command, with which settings);
- a non-empty folder without the command's marker is refused, naming the folder and some of its files:
  cf_hf never writes into (or lets the Trainer's checkpoint rotation delete from) a user's folder;
- a folder the same command wrote is continued when the settings that change its results are the
  same; with other settings it is refused (naming each setting, before and now) unless `overwrite`,
  which deletes only the entries the command writes (`owned` patterns) and keeps everything else.

Entries the command writes are named by glob patterns over the folder's top-level names, so that a run
killed before it could record its files is still recognised as its own.
"""

from __future__ import annotations

import fnmatch
import json
import shlex
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

# The marker file of a folder a cf-hf command wrote.
MARKER_NAME = ".cf_hf_output.json"
# Entries named in a refusal message (the rest are counted).
LISTED_ENTRIES = 5


class OutputFolderError(FileExistsError):
    """The output folder cannot be written: it holds files the command did not write, or another run's."""


def _json_ready(value: Any) -> Any:
    """`value` as JSON can hold it (paths and tuples as strings and lists), for comparison with a marker."""
    return json.loads(json.dumps(value, default=str))


def read_marker(folder: str | Path) -> dict | None:
    """The marker of `folder` (`{"command", "settings"}`), or None when there is none or it is unreadable."""
    try:
        marker = json.loads((Path(folder) / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and "command" in marker else None


def _listing(entries: list[str]) -> str:
    shown = ", ".join(entries[:LISTED_ENTRIES])
    return shown + (f" and {len(entries) - LISTED_ENTRIES} more" if len(entries) > LISTED_ENTRIES else "")


def setting_differences(before: Mapping, now: Mapping) -> list[str]:
    """`name: before -> now` for each setting that differs between two settings mappings."""
    before, now = _json_ready(dict(before)), _json_ready(dict(now))
    return [f"{name}: {before.get(name)!r} -> {now.get(name)!r}"
            for name in sorted(set(before) | set(now)) if before.get(name) != now.get(name)]


def claim_output_folder(
    folder: str | Path,
    command: str,
    settings: Mapping[str, Any] | None = None,
    owned: Iterable[str] = ("*",),
    overwrite: bool = False,
    resume: bool = True,
    option: str = "--output_dir",
    earlier_record: str | None = None,
) -> Path:
    """Check that `command` may write `folder`, create it and mark it as `command`'s; return it.

    Args:
        folder: the output folder.
        command: the `cf-hf` subcommand that writes it (recorded in the marker).
        settings: every setting that changes what the command writes (JSON-serialisable); a run into a
            folder the command wrote with other settings is refused unless `overwrite`.
        owned: glob patterns of the top-level entries the command writes (what `overwrite` may delete).
        overwrite: replace what an earlier run of `command` wrote (other entries are kept).
        resume: whether a run with the same settings continues the folder's run; when False, a
            non-empty folder of the same command is refused unless `overwrite`.
        option: the option that named the folder, for the messages.
        earlier_record: the file by which the command recognised its own folder before it marked them
            (`manifest.json` of a generation run, ...): an unmarked folder holding it and nothing the command
            does not write is refused with the exact marker to write if it is to be continued.
    Raises:
        OutputFolderError: the folder holds entries the command did not write, was written by another
            command, or by a run with other settings; or it is a file.
    """
    folder = Path(folder)
    settings = _json_ready(dict(settings or {}))
    owned = tuple(owned)
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"{option} {folder} is a file, not a folder: choose a folder.")
    entries = sorted(child.name for child in folder.iterdir()) if folder.is_dir() else []
    marker = read_marker(folder) if entries else None
    if entries and marker is None and earlier_record is not None and earlier_record in entries and all(
            any(fnmatch.fnmatch(name, pattern) for pattern in owned) for name in entries):
        # An earlier cf_hf's output: nothing shows which settings wrote it, so only its owner can vouch.
        content = json.dumps({"command": command, "settings": settings}, sort_keys=True)
        raise OutputFolderError(
            f"{option} {folder} holds a cf-hf {command} output written before cf_hf marked its folders "
            f"({earlier_record}, no {MARKER_NAME}): if it was written with the same options, mark it with "
            f"`echo {shlex.quote(content)} > {shlex.quote(str(folder / MARKER_NAME))}` and run the same command "
            "again to continue it; otherwise choose another folder.")
    if entries and marker is None:
        raise OutputFolderError(
            f"{option} {folder} is not empty and cf-hf {command} did not write it (it holds {_listing(entries)}): "
            "choose a new or empty folder; cf_hf never writes into, or deletes from, a folder of other files.")
    if marker is not None and marker["command"] != command:
        raise OutputFolderError(
            f"{option} {folder} was written by cf-hf {marker['command']}, not cf-hf {command}: choose another folder.")
    foreign = [name for name in entries if name != MARKER_NAME
               and not any(fnmatch.fnmatch(name, pattern) for pattern in owned)]
    if foreign:
        raise OutputFolderError(
            f"{option} {folder} holds {_listing(foreign)}, which cf-hf {command} did not write: move them out "
            "or choose another folder.")
    ours = [name for name in entries if name != MARKER_NAME]
    if ours and not overwrite:
        differences = setting_differences(marker.get("settings", {}), settings)
        if not resume:
            raise OutputFolderError(
                f"{option} {folder} holds an earlier cf-hf {command} run ({_listing(ours)}): pass --overwrite to "
                "replace it, resume it if the command can, or choose another folder.")
        if differences:
            raise OutputFolderError(
                f"{option} {folder} holds a cf-hf {command} run with other settings ({'; '.join(differences)}): "
                "its results would be reused under the new settings. Pass --overwrite to replace it, the same "
                "settings to continue it, or another folder.")
    if ours and overwrite:
        for name in ours:
            path = folder / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER_NAME).write_text(
        json.dumps({"command": command, "settings": settings}, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return folder


# What a Hugging Face Trainer writes into its output folder (the weights, config and processor files
# `save_pretrained` writes, checkpoints, logs); `overwrite` deletes only these.
TRAINER_OUTPUTS = ("checkpoint-*", "*.safetensors", "*.bin", "*.json", "*.txt", "*.model", "runs", "README.md",
                   "embeddings", "merges.txt")
# The TrainingArguments that change what a run trains (the others change only logging, saving or speed).
# The length (num_train_epochs, max_steps) is not among them: a resume may continue a run for longer.
TRAINING_SETTINGS = ("learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "seed",
                     "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm", "lr_scheduler_type", "warmup_steps", "optim")


def training_settings(training_args: Any, **command_settings: Any) -> dict:
    """The settings of a training run a resume must share: `TRAINING_SETTINGS`, the fields that
    `training_args`'s class declares beyond `TrainingArguments`, and `command_settings`."""
    from dataclasses import fields

    from transformers import TrainingArguments

    base = {field.name for field in fields(TrainingArguments)}
    names = [name for name in TRAINING_SETTINGS if hasattr(training_args, name)]
    names += [field.name for field in fields(training_args) if field.name not in base]
    names = [name for name in names if name not in {"resume_from_checkpoint", "output_dir"}]
    return {**{name: getattr(training_args, name) for name in names}, **command_settings}
