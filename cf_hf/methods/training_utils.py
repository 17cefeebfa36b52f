"""What every method's trainer needs: the training dataset from a folder, a Dataset or a Hub id; a model
or dataset that fails to load named with the corrupt file; the checkpoint to resume from."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datasets

# Words of --resume_from_checkpoint meaning "the latest checkpoint in output_dir".
LATEST_CHECKPOINT_WORDS = ("last", "True")


@contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) while the block runs, then raise `KeyboardInterrupt` if one came.

    The Trainer writes a checkpoint file by file: Ctrl-C in the middle left a half-written
    `checkpoint-N` that a resume has to skip. Around a save, Ctrl-C lets the save finish first (a
    second Ctrl-C is held too: a save takes a fraction of a second). Only the main thread can
    handle signals: elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # Only the main thread handles signals; a process that ignores Ctrl-C (started in the
        # background by a shell) keeps ignoring it.
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def load_training_dataset(dataset: str | datasets.Dataset | datasets.DatasetDict, split: str = "train"):
    """A `datasets.Dataset` from a Dataset, a DatasetDict (its `split`), a folder or a Hub id.

    Folders written by `save_to_disk` are read with `load_from_disk`; other folders (parquet shards,
    image folders) and Hub ids with `load_dataset(dataset, split=split)`.
    """
    import datasets

    if isinstance(dataset, datasets.Dataset):
        return dataset
    if isinstance(dataset, datasets.DatasetDict):
        return dataset[split]
    path = os.fspath(dataset)
    if os.path.isdir(path) and any(
        os.path.exists(os.path.join(path, marker)) for marker in ("state.json", "dataset_dict.json")
    ):
        loaded = datasets.load_from_disk(path)
        return loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
    if os.path.isdir(path):
        # `load_dataset(folder)` keys its cache on the folder's name and README metadata, not on the
        # files: two folders both called `dataset` with the same card would share one (stale) cache
        # entry. Loading the builder's resolved data files keys the cache on their paths and times.
        builder = datasets.load_dataset_builder(path)
        if split not in (builder.config.data_files or {}):
            available = sorted(builder.config.data_files or {})
            raise ValueError(f"{path} has no split {split!r}; its splits are {available}")
        return datasets.load_dataset(
            builder.name, data_files=builder.config.data_files, features=builder.info.features, split=split
        )
    return datasets.load_dataset(path, split=split)


def unreadable_data_file(folder: str) -> str | None:
    """The first parquet or Arrow file under `folder` that pyarrow cannot read, with the reason."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    readers = {".parquet": lambda path: pq.read_metadata(path), ".arrow": lambda path: pa.ipc.open_stream(
        pa.memory_map(str(path))).read_all()}  # fmt: skip
    for path in sorted(Path(folder).rglob("*")):
        reader = readers.get(path.suffix)
        if reader is None or not path.is_file():
            continue
        try:
            reader(path)
        except (pa.ArrowException, OSError) as error:
            return f"{path} is not a readable {path.suffix[1:]} file ({error}): it is truncated or corrupt"
    return None


def load_dataset_or_name_the_file(dataset, split: str):
    """`load_training_dataset`, with a failure to load a folder or Hub id named, and the corrupt file
    named when a folder holds one."""
    try:
        return load_training_dataset(dataset, split)
    except Exception as error:
        if not isinstance(dataset, (str, os.PathLike)):
            raise
        path = os.fspath(dataset)
        reason = unreadable_data_file(path) if os.path.isdir(path) else None
        if reason is None and isinstance(error, ValueError) and path in str(error):
            raise  # already names the dataset (e.g. a missing split)
        raise ValueError(
            f"cannot load the training dataset {path}: {reason or f'{type(error).__name__}: {error}'}"
        ) from error


def unreadable_weights_file(folder: str) -> str | None:
    """The first `*.safetensors` file in `folder` whose header safetensors cannot read, with the reason."""
    from safetensors import SafetensorError, safe_open

    for path in sorted(Path(folder).glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as weights:
                weights.keys()
        except (SafetensorError, OSError) as error:
            return f"{path} is not a readable safetensors file ({error}): it is truncated or corrupt"
    return None


def from_pretrained_or_name_the_file(loader, model_name_or_path: str, what: str):
    from safetensors import SafetensorError

    try:
        return loader.from_pretrained(model_name_or_path)
    except (OSError, ValueError, SafetensorError) as error:
        reason = unreadable_weights_file(model_name_or_path) if os.path.isdir(model_name_or_path) else None
        if reason is None and isinstance(error, (OSError, ValueError)):
            raise  # a model that cannot be found: `cf_hf.utils.model_loading.model_loading` names the cause
        raise ValueError(
            f"cannot load the {what} from {model_name_or_path}: {reason or f'{type(error).__name__}: {error}'}"
        ) from error


# The file the Trainer writes last into a checkpoint folder: a folder without a readable one is incomplete.
TRAINER_STATE_NAME = "trainer_state.json"


def incomplete_checkpoint(folder: str | Path) -> str | None:
    """Why `folder` is not a complete Trainer checkpoint (the Trainer does not write them atomically:
    a run killed while saving leaves a partial one), or None if it is complete."""
    import json

    state = Path(folder) / TRAINER_STATE_NAME
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"{folder} has no readable {TRAINER_STATE_NAME} (the run stopped while saving it)"
    return unreadable_weights_file(str(folder))


def latest_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The newest complete `checkpoint-<step>` folder in `output_dir` (incomplete ones are skipped, with a
    warning naming them), or None."""
    import logging
    import re

    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    steps = sorted(((int(match.group(1)), path) for path in output_dir.iterdir()
                    if path.is_dir() and (match := re.fullmatch(r"checkpoint-(\d+)", path.name))), reverse=True)
    for _, path in steps:
        reason = incomplete_checkpoint(path)
        if reason is None:
            return str(path)
        logging.getLogger(__name__).warning("skipping %s: %s; remove it", path.name, reason)
    return None


def resolve_checkpoint(resume_from_checkpoint: str | bool | None, output_dir: str) -> str | None:
    """The checkpoint folder to resume from: a folder as given (refused if incomplete), or for 'last' /
    'True' (any case, or True) the newest complete `checkpoint-*` in `output_dir`; None for None, False
    or 'False'."""
    if resume_from_checkpoint in (None, False) or str(resume_from_checkpoint).lower() == "false":
        return None
    words = [word.lower() for word in LATEST_CHECKPOINT_WORDS]
    if resume_from_checkpoint is True or str(resume_from_checkpoint).lower() in words:
        latest = latest_complete_checkpoint(output_dir)
        if latest is None:
            raise ValueError(
                f"resume_from_checkpoint={resume_from_checkpoint!r}: there is no checkpoint-* folder in "
                f"output_dir {output_dir} with a complete save to resume from (start without --resume_from_checkpoint, or name "
                "a checkpoint folder)"
            )
        return latest
    if not os.path.isdir(resume_from_checkpoint):
        raise ValueError(
            f"resume_from_checkpoint={resume_from_checkpoint!r} is not a checkpoint folder; give one, or "
            f"{' / '.join(LATEST_CHECKPOINT_WORDS)} for the latest checkpoint in output_dir"
        )
    reason = incomplete_checkpoint(resume_from_checkpoint)
    if reason is not None:
        raise ValueError(f"resume_from_checkpoint={resume_from_checkpoint!r} is incomplete: {reason}; "
                         "remove it and resume from the one before")
    return resume_from_checkpoint
