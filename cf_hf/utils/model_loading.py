"""Model-loading errors that name the model and say why it did not load.

`transformers`, `diffusers` and `huggingface_hub` report a missing model in many ways: a typo in a
local path reads "couldn't connect to huggingface.co", an uncached model on an offline machine
"does not appear to have a file named model_index.json". Every model load in cf_hf goes through

```python
with model_loading(model_id, "text-to-image model"):
    pipeline = AutoPipelineForText2Image.from_pretrained(model_id, ...)
```
which turns those errors into one `ModelLoadError` whose message says which of these it is: no
such local folder, a folder that is not a model, not in the cache while the Hub is offline or
unreachable, a gated model, no such model on the Hub, no such revision. `check_model_source` asks
the same question before any weights are read (a run checks its models before it writes anything).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# What makes a folder a model folder: a transformers config or a diffusers pipeline index.
MODEL_FOLDER_FILES = ("config.json", "model_index.json")


class ModelLoadError(OSError):
    """A model could not be loaded; the message names the model and says why.

    An `OSError`, as the libraries' own loading errors are, so that existing handlers keep working.
    `model_id` is the id or folder that failed.
    """

    def __init__(self, model_id: str, message: str):
        super().__init__(message)
        self.model_id = model_id


def looks_local(model_id: str) -> bool:
    """Whether `model_id` can only be a local path: it starts with `.`, `/` or `~`, has more than
    one `/` or a platform separator other than `/`. A Hub id is `name` or `namespace/name`."""
    separators = {os.sep, os.altsep} - {None, "/"}
    return (
        model_id.startswith((".", "/", "~"))
        or model_id.count("/") > 1
        or any(separator in model_id for separator in separators)
        or Path(model_id).is_absolute()
    )


def _local_problem(model_id: str, role: str) -> str | None:
    """Why `model_id` as a local folder cannot be loaded, or None if it is a model folder or a Hub id."""
    path = Path(model_id).expanduser()
    if path.is_dir():
        if not any((path / name).is_file() for name in MODEL_FOLDER_FILES):
            found = ", ".join(sorted(child.name for child in path.iterdir())[:5]) or "nothing"
            return (
                f"{role} {model_id!r} is not a model folder: it has no {' or '.join(MODEL_FOLDER_FILES)} "
                f"(it holds {found}). Pass the folder `save_pretrained` wrote, or a Hub id."
            )
        return None
    if path.exists():
        return f"{role} {model_id!r} is a file, not a model folder. Pass the folder `save_pretrained` wrote, or a Hub id."
    if looks_local(model_id):
        return f"{role}: no such local folder: {model_id!r}. Check the path, or pass a Hub id (namespace/name)."
    return None


def unreadable_model_file(model_id: str, role: str = "model") -> str | None:
    """Why a local model folder's files cannot be read (a `config.json` that is not a JSON object, a
    truncated or corrupt `*.safetensors` header), or None; None for a Hub id. Reads no weights."""
    import json

    from safetensors import SafetensorError, safe_open

    folder = Path(model_id).expanduser()
    if not folder.is_dir():
        return None
    for name in MODEL_FOLDER_FILES:
        path = folder / name
        if path.is_file():
            try:
                config = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError) as error:
                return f"{role} {model_id!r}: {path} is not valid JSON ({error}): the file is truncated or corrupt"
            if not isinstance(config, dict):
                return f"{role} {model_id!r}: {path} is not a JSON object"
    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as weights:
                weights.keys()
        except (SafetensorError, OSError) as error:
            return (f"{role} {model_id!r}: {path} is not a readable safetensors file ({error}): it is truncated "
                    "or corrupt; write the checkpoint again")
    return None


def _architecture(model_id: str) -> str | None:
    """The model type a local folder's config.json names (e.g. 'clip', 'bert'), or None."""
    import json

    try:
        config = json.loads((Path(model_id).expanduser() / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config.get("model_type") if isinstance(config, dict) else None


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _offline() -> bool:
    from huggingface_hub import constants

    return constants.is_offline_mode()


def explain(model_id: str, error: BaseException, role: str = "model", revision: str | None = None) -> str | None:
    """Why loading `model_id` raised `error`, in one message; None if the cause is not recognised."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    local = _local_problem(model_id, role) or unreadable_model_file(model_id, role)
    if local is not None:
        return local
    causes = list(_causes(error))
    model_type = _architecture(model_id)
    if isinstance(error, RuntimeError) and model_type is not None:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return (f"{role} {model_id!r}: its config.json describes a {model_type!r} model whose weights do not fit "
                f"the model loaded here ({first_line}): pass a checkpoint of the right architecture")
    not_local = "" if Path(model_id).expanduser().exists() else f" (no local folder {model_id!r} either)"
    for cause in causes:
        if isinstance(cause, GatedRepoError):
            return (
                f"{role} {model_id!r} is gated: accept its licence on {constants.ENDPOINT}/{model_id} "
                "and log in (`hf auth login`, or set HF_TOKEN)."
            )
        if isinstance(cause, RevisionNotFoundError):
            return f"{role} {model_id!r} has no revision {revision or 'main'!r} on the Hub."
        if isinstance(cause, RepositoryNotFoundError):
            return (
                f"{role} {model_id!r} is not a model on the Hub{not_local}; if it is private, "
                "log in (`hf auth login`, or set HF_TOKEN)."
            )
        if isinstance(cause, HFValidationError):
            return f"{role} {model_id!r} is neither a local folder nor a valid Hub id (namespace/name)."
    if any(isinstance(cause, (LocalEntryNotFoundError, OfflineModeIsEnabled)) for cause in causes):
        if _offline():
            return (
                f"{role} {model_id!r} is not in the local cache and the Hub is offline (HF_HUB_OFFLINE=1){not_local}: "
                f"download it once online (`hf download {model_id}`), or pass a local folder."
            )
        reason = next((str(cause) for cause in reversed(causes) if isinstance(cause, OSError)), "no connection")
        return (
            f"{role} {model_id!r} is not in the local cache and the Hub could not be reached ({reason}){not_local}: "
            "check the connection, or pass a local folder."
        )
    return None


@contextmanager
def model_loading(model_id: str, role: str = "model", revision: str | None = None) -> Iterator[None]:
    """Turn a failed load inside the block into a `ModelLoadError` naming `model_id` and the cause.

    `OSError`s and safetensors errors (what the libraries raise for a model they cannot find or read)
    always become a `ModelLoadError`; a `ValueError` or `RuntimeError` only when the cause is recognised
    (a folder that is not a model, a corrupt file, weights of another architecture), so that other bad
    arguments keep their own message.
    """
    from safetensors import SafetensorError

    try:
        yield
    except ModelLoadError:
        raise
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:
        message = explain(str(model_id), error, role, revision)
        if message is None:
            if not isinstance(error, (OSError, SafetensorError)):
                raise
            message = f"cannot load {role} {str(model_id)!r}: {error}"
        raise ModelLoadError(str(model_id), message) from error


# The model types of CLIP checkpoints (transformers' and cf_hf's registered subclasses all start so).
CLIP_MODEL_TYPE_PREFIX = "clip"


def check_model_source(model_id: str, revision: str | None = None, role: str = "model",
                       model_type_prefix: str | None = None) -> None:
    """Raise `ModelLoadError` now if `model_id` cannot be found; reads no weights.

    A local folder must hold `config.json` or `model_index.json`, readable, with readable safetensors
    headers (and, with `model_type_prefix`, a config whose `model_type` starts with it); a Hub id must resolve (from the
    cache when offline), its config files are fetched and nothing else.
    """
    local = _local_problem(str(model_id), role) or unreadable_model_file(str(model_id), role)
    if local is not None:
        raise ModelLoadError(str(model_id), local)
    if Path(model_id).expanduser().is_dir():
        model_type = _architecture(str(model_id))
        if model_type_prefix is not None and model_type is not None and not model_type.startswith(model_type_prefix):
            raise ModelLoadError(str(model_id), f"{role} {model_id!r}: its config.json describes a {model_type!r} model, "
                                                f"not a {model_type_prefix!r} one: pass a checkpoint of the right architecture")
        return
    from huggingface_hub import snapshot_download

    with model_loading(model_id, role, revision):
        snapshot_download(str(model_id), revision=revision, allow_patterns=list(MODEL_FOLDER_FILES))
