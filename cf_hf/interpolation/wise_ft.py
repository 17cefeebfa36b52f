"""WiSE-FT interpolation between the original CLIP and the fine-tuned one: the CF_alpha family.

`theta_alpha = (1 - alpha) * theta_original + alpha * theta_finetuned` for every floating-point
tensor; alpha = 0 is the original model, alpha = 1 the fine-tuned one. The arithmetic runs in
float32 whatever the storage dtype, and the result is stored in the original checkpoint's dtype.
A tensor the fine-tuning left unchanged (a frozen tower) is copied as it is: in floating point
`(1 - alpha) * w + alpha * w` can miss `w` by a rounding step, which would make every alpha's frozen
tower a slightly different model (and defeat the evaluation's cache of that tower's outputs).
Non-floating tensors (integer buffers such as `position_ids`) cannot be interpolated: they are
copied from the fine-tuned model after checking that both endpoints hold the same values.
Only the tensors a freshly built model of the checkpoint's config holds in its state dict are
compared and written: a checkpoint saved by an older transformers may carry buffers that are no
longer saved (the Hub's openai/clip-vit-base-patch32 holds both `position_ids`); they are left out
and listed in sweep.json as `ignored_keys`.

`interpolate` works on in-memory models or state dicts. `interpolate_sweep` writes one checkpoint
folder per alpha straight from the two saved checkpoints, one tensor at a time: the endpoints are
memory-mapped safetensors files and the output is streamed to disk, so no more than the two
endpoint models are ever held, whatever the number of alphas. The sweep layout:

    output_dir/
      sweep.json            {"original", "finetuned", "fingerprints", "alphas": [{"alpha": 0.5, "path": "alpha-0.5"}, ...], ...}
      alpha-0/              a complete checkpoint: model.safetensors, config.json, processor files,
      alpha-0.25/           and interpolation.json ({"alpha", "original", "finetuned", "fingerprints"})
      ...

Folder names are `alpha-` followed by the alpha in `%g` format; paths in sweep.json are relative
to the sweep folder; `"checkpoints"` maps the same alphas (`%g` strings) to folder names;
`"fingerprints"` holds the sha256 of each endpoint's weight files, so that a later run into the
same folder adds its α's to the sweep only when it interpolates the same weights. Each folder loads with
`CLIPModel.from_pretrained(folder)` and `CLIPProcessor.from_pretrained(folder)`, no cf_hf needed.

LoRA: interpolate the *merged* model (`peft`'s `merge_and_unload()`, which cf_hf training does
before saving); an adapter folder is refused with that advice.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import shutil
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch

from cf_hf.interpolation.sweep import ALPHA_FOLDER_PREFIX, INTERPOLATION_FILE, SWEEP_FILE, alpha_name

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
# Files of a transformers processor (tokenizer + image processor) copied into every checkpoint.
PROCESSOR_FILES = (
    "processor_config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
)
ENDPOINTS = ("original", "finetuned")
_FINGERPRINT_CHUNK_BYTES = 16 * 2**20
# Config fields that may differ between two checkpoints of the same architecture.
_CONFIG_FIELDS_COMPARED = ("model_type", "architectures")
_SAFETENSORS_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def check_alphas(alphas: Iterable[float], allow_extrapolation: bool = False) -> list[float]:
    """Validate an alpha list: not empty, no duplicates, within [0, 1] unless extrapolating."""
    alphas = [float(alpha) for alpha in alphas]
    if not alphas:
        raise ValueError("no alpha given: pass at least one, e.g. --alphas 0 0.25 0.5 0.75 1")
    infinite = [alpha for alpha in alphas if not math.isfinite(alpha)]
    if infinite:
        raise ValueError(f"alpha {infinite} is not a finite number: the weights would be NaN or infinite")
    names = [alpha_name(alpha) for alpha in alphas]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"duplicate alphas {duplicates}: each alpha must appear once")
    outside = [alpha for alpha in alphas if not 0.0 <= alpha <= 1.0]
    if outside and not allow_extrapolation:
        raise ValueError(
            f"alpha {outside} outside [0, 1]: 0 is the original model, 1 the fine-tuned one. "
            "Pass allow_extrapolation=True (--allow_extrapolation) to extrapolate on purpose."
        )
    return alphas


def _mix(name: str, original: torch.Tensor, finetuned: torch.Tensor, alpha: float) -> torch.Tensor:
    """One interpolated tensor, in the original's dtype (see module docstring)."""
    if original.is_floating_point():
        if torch.equal(original, finetuned):
            return original.clone()
        mixed = (1.0 - alpha) * original.to(torch.float32) + alpha * finetuned.to(torch.float32)
        return mixed.to(original.dtype)
    if not torch.equal(original, finetuned.to(original.dtype)):
        raise ValueError(
            f"non-floating tensor {name!r} differs between the checkpoints: it cannot be interpolated, "
            "and the two models are not the same architecture"
        )
    return finetuned.clone()


def _mismatches(original: Mapping[str, tuple], finetuned: Mapping[str, tuple]) -> list[str]:
    """Human-readable differences between two {name: shape} maps (empty when compatible)."""
    problems = [f"only in the original: {name}" for name in sorted(set(original) - set(finetuned))]
    problems += [f"only in the fine-tuned: {name}" for name in sorted(set(finetuned) - set(original))]
    problems += [
        f"shape of {name}: original {list(original[name])} vs fine-tuned {list(finetuned[name])}"
        for name in sorted(set(original) & set(finetuned))
        if tuple(original[name]) != tuple(finetuned[name])
    ]
    return problems


def _raise_on_mismatch(problems: list[str]) -> None:
    if problems:
        shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise ValueError(
            "the original and fine-tuned checkpoints do not have the same architecture "
            f"({len(problems)} differences):\n  {shown}"
        )


def interpolate(original, finetuned, alpha: float, allow_extrapolation: bool = False):
    """WiSE-FT: `(1 - alpha) * original + alpha * finetuned`, tensor by tensor.

    Args:
        original, finetuned: two `torch.nn.Module`s of the same architecture (e.g. `CLIPModel`), or
            two state dicts (name -> tensor) with the same keys and shapes.
        alpha: 0 gives the original, 1 the fine-tuned model.
        allow_extrapolation: accept alpha outside [0, 1].

    Returns:
        A state dict when given state dicts; a new model (a copy of `original` holding the
        interpolated weights, in the original's dtype) when given models. The inputs are not modified.
    """
    (alpha,) = check_alphas([alpha], allow_extrapolation)
    is_module = isinstance(original, torch.nn.Module)
    if is_module != isinstance(finetuned, torch.nn.Module):
        raise TypeError("pass two models or two state dicts, not one of each")
    if is_module and type(original).__name__ != type(finetuned).__name__:
        # Subclasses that only change the loss (CounterfactualCLIPModel) share CLIPModel's weights.
        if not (isinstance(original, type(finetuned)) or isinstance(finetuned, type(original))):
            raise ValueError(
                f"different architectures: {type(original).__name__} vs {type(finetuned).__name__}"
            )
    original_state = original.state_dict() if is_module else original
    finetuned_state = finetuned.state_dict() if is_module else finetuned
    _raise_on_mismatch(
        _mismatches(
            {name: tuple(t.shape) for name, t in original_state.items()},
            {name: tuple(t.shape) for name, t in finetuned_state.items()},
        )
    )
    mixed = {
        name: _mix(name, tensor, finetuned_state[name], alpha) for name, tensor in original_state.items()
    }
    if not is_module:
        return mixed
    model = copy.deepcopy(original)
    model.load_state_dict(mixed)
    return model


# ----------------------------------------------------------------------------------------------
# Checkpoints on disk


class _Checkpoint:
    """The tensors of a saved checkpoint, read lazily (memory-mapped) one at a time."""

    def __init__(self, path: str | Path, role: str):
        self.path = _resolve_checkpoint(path, role)
        self.role = role
        self.config = json.loads((self.path / "config.json").read_text())
        index = self.path / f"{WEIGHTS_FILE}.index.json"
        if index.is_file():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        elif (self.path / WEIGHTS_FILE).is_file():
            files = [WEIGHTS_FILE]
        else:
            raise ValueError(
                f"{role} checkpoint {self.path} has no {WEIGHTS_FILE}: save it with "
                "`model.save_pretrained(folder)` (safetensors is the default)"
            )
        from safetensors import safe_open

        self._files = files
        self._handles = [safe_open(str(self.path / name), framework="pt") for name in files]
        self._where = {key: handle for handle in self._handles for key in handle.keys()}

    def shapes(self) -> dict[str, tuple]:
        return {key: tuple(handle.get_slice(key).get_shape()) for key, handle in self._where.items()}

    def dtypes(self) -> dict[str, torch.dtype]:
        by_name = {name: dtype for dtype, name in _SAFETENSORS_DTYPES.items()}
        found = {key: handle.get_slice(key).get_dtype() for key, handle in self._where.items()}
        unsupported = sorted(set(found.values()) - set(by_name))
        if unsupported:
            raise ValueError(f"{self.role} checkpoint: tensor dtypes {unsupported} are not supported")
        return {key: by_name[name] for key, name in found.items()}

    def tensor(self, key: str) -> torch.Tensor:
        return self._where[key].get_tensor(key)

    def fingerprint(self) -> str:
        """sha256 of the weight files: names the weights whatever folder or repo id holds them."""
        digest = hashlib.sha256()
        for name in self._files:
            with open(self.path / name, "rb") as file:
                while chunk := file.read(_FINGERPRINT_CHUNK_BYTES):
                    digest.update(chunk)
        return digest.hexdigest()


def check_processor_folder(processor_from: str | Path | None) -> None:
    """Refuse a `processor_from` that is not a folder holding processor files: the checkpoints would be
    written without them, and load without a tokenizer."""
    if processor_from is None:
        return
    folder = Path(processor_from)
    if not folder.is_dir():
        raise FileNotFoundError(f"processor_from {str(folder)!r}: no such folder")
    if not any((folder / name).is_file() for name in PROCESSOR_FILES):
        raise FileNotFoundError(f"processor_from {str(folder)!r} holds none of the processor files "
                                f"{', '.join(PROCESSOR_FILES)}: pass the folder a processor was saved to")


def _resolve_checkpoint(path: str | Path, role: str) -> Path:
    """A local checkpoint folder; a Hub repo id (`org/name` or `org/name@revision`) is downloaded."""
    local = Path(path)
    if local.is_dir():
        if (local / "adapter_config.json").is_file() and not (local / "config.json").is_file():
            raise ValueError(
                f"{role} checkpoint {local} is a LoRA adapter: merge it into its base model first "
                "(`peft_model.merge_and_unload().save_pretrained(folder)`) and interpolate the merged folder"
            )
        if not (local / "config.json").is_file():
            raise ValueError(f"{role} checkpoint {local} has no config.json: not a transformers checkpoint")
        return local
    repo_id, _, revision = str(path).partition("@")
    if local.exists() or repo_id.count("/") != 1 or repo_id.startswith((".", "/")):
        raise ValueError(f"{role} checkpoint {str(path)!r} is neither a checkpoint folder nor a Hub repo id")
    from huggingface_hub import snapshot_download

    from cf_hf.utils.model_loading import model_loading

    patterns = ["config.json", "*.safetensors", f"{WEIGHTS_FILE}.index.json", *PROCESSOR_FILES]
    with model_loading(repo_id, f"{role} checkpoint", revision or None):
        return Path(snapshot_download(repo_id, revision=revision or None, allow_patterns=patterns))


def _model_keys(checkpoint: Path) -> set[str] | None:
    """The state-dict keys of a freshly built model of `checkpoint`'s config (built on the meta
    device, so no memory is allocated): what `from_pretrained` loads. Non-persistent buffers are not
    among them. None when transformers cannot build the architecture (every key then counts)."""
    import transformers
    from transformers import AutoConfig, AutoModel

    try:
        config = AutoConfig.from_pretrained(checkpoint)
    except (ValueError, KeyError, OSError):
        return None
    model_class = next((getattr(transformers, name) for name in config.architectures or ()
                        if hasattr(transformers, name)), None)
    try:
        with torch.device("meta"):
            model = model_class(config) if model_class is not None else AutoModel.from_config(config)
    except (ValueError, KeyError, ImportError, TypeError):
        return None
    return set(model.state_dict())


def _check_configs(original: dict, finetuned: dict) -> None:
    problems = [
        f"{key}: original {original.get(key)!r} vs fine-tuned {finetuned.get(key)!r}"
        for key in _CONFIG_FIELDS_COMPARED
        if original.get(key) != finetuned.get(key)
    ]
    _raise_on_mismatch(problems)


def _write_safetensors(path: Path, shapes: dict[str, tuple], dtypes: dict[str, torch.dtype], tensors) -> None:
    """Stream a safetensors file: the header is known from shapes/dtypes, then one tensor at a time.

    `tensors` yields (name, tensor) in sorted-name order, matching the header's offsets.
    """
    header, offset = {}, 0
    for name in sorted(shapes):
        size = int(torch.Size(shapes[name]).numel()) * torch.empty((), dtype=dtypes[name]).element_size()
        header[name] = {"dtype": _SAFETENSORS_DTYPES[dtypes[name]], "shape": list(shapes[name]),
                        "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {"format": "pt"}
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the data section starts 8-byte aligned
    with open(path, "wb") as file:
        file.write(struct.pack("<Q", len(encoded)))
        file.write(encoded)
        for name, tensor in tensors:
            data = tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
            start, end = header[name]["data_offsets"]
            if len(data) != end - start:
                raise RuntimeError(f"size of {name} changed while writing")
            file.write(data)


def _copy_processor(source: Path, destination: Path) -> list[str]:
    copied = []
    for name in PROCESSOR_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, destination / name)
            copied.append(name)
    return copied


def _endpoint_differences(record: Mapping, endpoints: Mapping) -> list[str]:
    """How the endpoints recorded in a sweep.json or interpolation.json differ from this run's:
    by weight fingerprint when both have one, else by the names given."""
    problems = []
    for role in ENDPOINTS:
        recorded = (record.get("fingerprints") or {}).get(role)
        same = recorded == endpoints["fingerprints"][role] if recorded else record.get(role) == endpoints[role]
        if not same:
            label = "fine-tuned" if role == "finetuned" else role
            problems.append(f"{label}: the sweep has {record.get(role)!r}"
                            + (f" (weights sha256 {recorded[:12]})" if recorded else "")
                            + f", this run has {endpoints[role]!r} (weights sha256 {endpoints['fingerprints'][role][:12]})")
    return problems


def _check_same_sweep(output_dir: Path, endpoints: Mapping) -> None:
    """Refuse to add to a sweep folder made from other endpoints (see `interpolate_sweep`)."""
    path = output_dir / SWEEP_FILE
    if not path.is_file():
        return
    try:
        previous = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}): repair or delete it") from None
    problems = _endpoint_differences(previous, endpoints)
    if problems:
        raise ValueError(
            f"{output_dir} holds a sweep between other checkpoints; its α's cannot be mixed with this run's:\n  "
            + "\n  ".join(problems) + "\nwrite this sweep to another --output_dir"
        )


def _sweep_members(output_dir: Path, endpoints: Mapping) -> dict[float, str]:
    """alpha -> folder name of every checkpoint in `output_dir` interpolated between `endpoints`
    (read from each folder's interpolation.json, so members a sweep.json left out are found)."""
    members = {}
    for folder in sorted(output_dir.glob(f"{ALPHA_FOLDER_PREFIX}*")):
        record_path = folder / INTERPOLATION_FILE
        if not record_path.is_file() or not (folder / WEIGHTS_FILE).is_file():
            continue
        try:
            record = json.loads(record_path.read_text())
            alpha = float(record["alpha"])
        except (ValueError, KeyError, TypeError):
            logger.warning("%s is unreadable: %s left out of %s", record_path, folder.name, SWEEP_FILE)
            continue
        if _endpoint_differences(record, endpoints):
            logger.warning("%s is not part of this sweep (other endpoints): left out of %s", folder, SWEEP_FILE)
            continue
        members[alpha] = folder.name
    return members


def interpolate_sweep(
    original: str | Path,
    finetuned: str | Path,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    output_dir: str | Path = "outputs/interpolation",
    allow_extrapolation: bool = False,
    processor_from: str | Path | None = None,
    overwrite: bool = False,
) -> dict:
    """Write the CF_alpha checkpoints `output_dir/alpha-<a>/` and `output_dir/sweep.json`.

    Args:
        original, finetuned: saved checkpoint folders (safetensors + config.json), or Hub repo ids
            (`org/name`, `org/name@revision`).
        alphas: the alphas to write (no duplicates; within [0, 1] unless `allow_extrapolation`).
        output_dir: the sweep folder (layout in the module docstring).
        processor_from: folder whose processor files are copied into each checkpoint (default: the
            fine-tuned checkpoint if it has them, else the original).
        overwrite: replace existing `alpha-*` folders instead of refusing.

    An `output_dir` that already holds a sweep is added to: sweep.json then lists the earlier α's
    and the new ones. Only a sweep between the same endpoints (the same weights, by sha256 of the
    weight files, whatever folder or repo id names them) is added to; otherwise nothing is written
    and the error names the differing endpoint.

    Returns:
        The content of sweep.json.
    """
    alphas = check_alphas(alphas, allow_extrapolation)
    output_dir = Path(output_dir)
    source_original = _Checkpoint(original, "original")
    source_finetuned = _Checkpoint(finetuned, "fine-tuned")
    _check_configs(source_original.config, source_finetuned.config)
    endpoints = {"original": str(original), "finetuned": str(finetuned),
                 "fingerprints": {"original": source_original.fingerprint(),
                                  "finetuned": source_finetuned.fingerprint()}}
    _check_same_sweep(output_dir, endpoints)
    existing = [alpha_name(a) for a in alphas if (output_dir / alpha_name(a)).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{output_dir} already holds {existing}: pass overwrite=True (--overwrite)")
    # Compare and write only what the model holds: a checkpoint saved by an older transformers (the
    # Hub's openai/clip-vit-base-patch32) still carries buffers that are no longer saved.
    shapes, finetuned_shapes = source_original.shapes(), source_finetuned.shapes()
    model_keys = _model_keys(source_original.path)
    ignored = sorted((set(shapes) | set(finetuned_shapes)) - model_keys) if model_keys is not None else []
    shapes = {name: shape for name, shape in shapes.items() if name not in ignored}
    finetuned_shapes = {name: shape for name, shape in finetuned_shapes.items() if name not in ignored}
    _raise_on_mismatch(_mismatches(shapes, finetuned_shapes))
    dtypes = {name: dtype for name, dtype in source_original.dtypes().items() if name in shapes}

    processor_source = Path(processor_from) if processor_from is not None else source_finetuned.path
    if processor_from is None and not any((processor_source / n).is_file() for n in PROCESSOR_FILES):
        processor_source = source_original.path
    check_processor_folder(processor_from)
    # The fine-tuned config records how it was trained; the stored dtype is the original's.
    config = dict(source_finetuned.config)
    for key in ("dtype", "torch_dtype"):
        config.pop(key, None)
        if key in source_original.config:
            config[key] = source_original.config[key]

    output_dir.mkdir(parents=True, exist_ok=True)
    for alpha in alphas:
        folder = output_dir / alpha_name(alpha)
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
        tensors = (
            (name, _mix(name, source_original.tensor(name), source_finetuned.tensor(name), alpha))
            for name in sorted(shapes)
        )
        _write_safetensors(folder / WEIGHTS_FILE, shapes, dtypes, tensors)
        (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        copied = _copy_processor(processor_source, folder)
        (folder / INTERPOLATION_FILE).write_text(json.dumps({"alpha": alpha, **endpoints}, indent=2) + "\n")
    members = _sweep_members(output_dir, endpoints)
    checkpoints = [{"alpha": alpha, "path": members[alpha]} for alpha in sorted(members)]
    sweep = {
        **endpoints,
        "alphas": checkpoints,
        "checkpoints": {f"{entry['alpha']:g}": entry["path"] for entry in checkpoints},
        "formula": "(1 - alpha) * original + alpha * finetuned",
        "processor_files": copied,
        "ignored_keys": ignored,
    }
    (output_dir / SWEEP_FILE).write_text(json.dumps(sweep, indent=2) + "\n")
    return sweep
