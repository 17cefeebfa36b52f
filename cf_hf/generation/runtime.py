"""Small helpers the stages share: derived seeds, torch dtypes and devices, atomic file writes."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

DTYPES = ("float32", "float16", "bfloat16")
# "auto": half precision where it is fast and halves the memory (CUDA), float32 elsewhere (CPU
# kernels are slow or missing in float16).
AUTO_DTYPE = "auto"
CUDA_DEFAULT_DTYPE = "float16"
CPU_DEFAULT_DTYPE = "float32"
# The first diffusers release whose `from_pretrained`/`from_pipe` read `dtype=`; older ones
# silently ignore it and load float32 (setup.cfg's floor must say the same).
MIN_DIFFUSERS_VERSION = "0.40.0"
# Seeds stay below 2**31 so that every library (numpy, torch, transformers) accepts them.
_SEED_MODULUS = 2**31


def derive_seed(seed: int, *keys: object) -> int:
    """A seed for one sample, derived from the run seed and the sample's identity.

    Derived by hashing, not by drawing from a shared generator, so that a sample's seed does not
    depend on which other samples were generated before it (resume, several processes).
    """
    text = "\x1f".join(str(part) for part in (seed, *keys))
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") % _SEED_MODULUS


def torch_dtype(name: str):
    """"float16" -> torch.float16; a clear error for anything outside `DTYPES`."""
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}.")
    import torch

    return getattr(torch, name)


def resolve_dtype(name: str, device: str) -> str:
    """The dtype name to load with: `name` itself, or for "auto" float16 on CUDA, float32 elsewhere."""
    if name == AUTO_DTYPE:
        return CUDA_DEFAULT_DTYPE if device.split(":")[0] == "cuda" else CPU_DEFAULT_DTYPE
    torch_dtype(name)  # a clear error for an unknown name
    return name


def process_device(device: str, local_process_index: int, num_processes: int, device_count: int | None = None) -> str:
    """The device one process of a multi-process launch (`accelerate launch`) uses.

    With one process, `device` as given. With several, `cuda` means the process's own GPU
    (`cuda:<local index>`) and `cuda:N` means GPU N + local index: the processes of a machine
    take consecutive GPUs from N on (`cuda:0` = `cuda`), never all the same one. Other devices
    (`cpu`, `mps`) are shared as given. With `device_count` (the GPUs present), a GPU index
    beyond them is refused with the option to change.
    """
    if num_processes <= 1:
        return device
    kind, _, index = device.partition(":")
    if kind != "cuda":
        return device
    if index and not index.isdigit():
        raise ValueError(f"--device {device!r} is not a CUDA device; use cuda or cuda:N.")
    mapped = int(index or 0) + local_process_index
    if device_count is not None and mapped >= device_count:
        raise ValueError(
            f"--device {device} on local process {local_process_index} of {num_processes} means cuda:{mapped}, "
            f"but this machine has {device_count} GPU(s): pass --device cuda (GPUs 0 to {num_processes - 1}) "
            "or launch fewer processes."
        )
    return f"cuda:{mapped}"


def cuda_device_count() -> int | None:
    """The number of CUDA GPUs, or None without CUDA (nothing to check a cuda:N against)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else None


def check_diffusers_version() -> None:
    """Refuse a diffusers release that would ignore `dtype=` (and load float32 in silence)."""
    import diffusers
    from packaging.version import Version

    if Version(diffusers.__version__) < Version(MIN_DIFFUSERS_VERSION):
        raise RuntimeError(
            f"diffusers {diffusers.__version__} ignores the dtype= argument (added in "
            f"{MIN_DIFFUSERS_VERSION}) and would load every model in float32: "
            f"pip install 'diffusers>={MIN_DIFFUSERS_VERSION}'."
        )


def release_accelerator_memory() -> None:
    """Collect garbage and hand the memory torch's CUDA allocator caches back to the device."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomically(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that a reader (or a crash) never sees a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
