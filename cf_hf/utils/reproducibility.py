"""The same CPU arithmetic on every x86 machine, for the commands whose numbers are documented.

The professions world trains small models from scratch on the CPU (`cf-hf demo`, `cf-hf ffr-demo`).
torch dispatches its vectorised kernels to the widest instruction set the CPU offers (AVX-512 or
AVX2 on x86), and oneMKL chooses its code path the same way: the sums are taken in another order,
rounding differs in the last bits, and over hundreds of training steps the models — and the α the
demo chooses — diverge. The number of threads matters too: each thread sums its own share. The documented numbers
were measured with AVX2 kernels, which every x86 CPU of the last decade runs, on 2 threads; pinning
both (`ATEN_CPU_CAPABILITY=avx2`, `MKL_CBWR=AVX2`, `OMP_NUM_THREADS=MKL_NUM_THREADS=2`) makes another
machine compute what that one did. They are read once, when torch loads its libraries: they must be
in the environment before `import torch`, which is why the dispatcher (`cf_hf.cli.main`) sets them
and `import cf_hf` never does (a library does not change its host's environment).

A value the user has set is kept. Where AVX2 cannot be pinned (another architecture, an x86 CPU
without AVX2 and FMA, a system whose CPU flags cannot be read) only the threads are, and the numbers
may differ: docs/reproducibility.md says what was measured.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import MutableMapping
from pathlib import Path

# The kernels pinned on x86 and the CPU features they need (torch's AVX2 kernels also use FMA).
PINNED_ARITHMETIC = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}
# The threads the documented numbers were computed with (2: the development machine's cores); pinned
# on every machine. `cf-hf demo --threads N` still overrides it (other numbers, docs/reproducibility.md).
PINNED_THREADS = 2
PINNED_THREAD_VARIABLES = {"OMP_NUM_THREADS": str(PINNED_THREADS), "MKL_NUM_THREADS": str(PINNED_THREADS)}
REQUIRED_CPU_FLAGS = frozenset({"avx2", "fma"})
X86_MACHINES = frozenset({"x86_64", "amd64", "i386", "i686"})
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str] | None:
    """The CPU's feature flags as Linux lists them (`flags` in /proc/cpuinfo); None where they cannot
    be read (another system, no /proc)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return None


def pinned_arithmetic_environment(machine: str | None = None, flags: frozenset[str] | None = None) -> dict[str, str]:
    """The environment variables that pin this machine's arithmetic: the thread count everywhere, and
    AVX2 kernels where they can run (x86 with AVX2 and FMA, flags known). `machine`/`flags` default
    to this machine's."""
    machine = (machine or platform.machine()).lower()
    if machine not in X86_MACHINES:
        return dict(PINNED_THREAD_VARIABLES)
    flags = cpu_flags() if flags is None else flags
    if flags is None or not REQUIRED_CPU_FLAGS <= flags:
        return dict(PINNED_THREAD_VARIABLES)
    return PINNED_ARITHMETIC | PINNED_THREAD_VARIABLES


def pin_cpu_arithmetic(environ: MutableMapping[str, str] | None = None, **detection) -> dict[str, str]:
    """Set the pinned arithmetic (`pinned_arithmetic_environment`) in `environ` (default: this
    process's) wherever the user has not set a value; return what was set.

    It only takes effect if torch has not been imported yet in this process: call it first."""
    environ = os.environ if environ is None else environ
    applied = {}
    for name, value in pinned_arithmetic_environment(**detection).items():
        if name not in environ:
            environ[name] = value
            applied[name] = value
    return applied


def torch_loaded_before_pinning(applied: dict[str, str]) -> bool:
    """Whether torch was imported before `pin_cpu_arithmetic` set `applied` (so that its kernels are
    not the pinned ones: a caller that imported torch itself, e.g. a test calling `cf_hf.cli.main`)."""
    return bool(applied) and "torch" in sys.modules
