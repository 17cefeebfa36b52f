"""Pinning the CPU arithmetic of the world's commands: what is set where, and that it is set before
torch loads (a fresh `cf-hf` process runs with AVX2 kernels)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cf_hf.cli import PINNED_ARITHMETIC_COMMANDS, pin_arithmetic_for
from cf_hf.utils.reproducibility import (
    PINNED_ARITHMETIC,
    PINNED_THREAD_VARIABLES,
    cpu_flags,
    pin_cpu_arithmetic,
    pinned_arithmetic_environment,
)

AVX2_MACHINE = {"machine": "x86_64", "flags": frozenset({"sse4_2", "avx", "avx2", "fma", "avx512f"})}


def test_cpu_flags_reads_the_flags_line(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx2 fma\n\nprocessor\t: 1\n")
    assert cpu_flags(cpuinfo) == frozenset({"fpu", "sse2", "avx2", "fma"})


def test_cpu_flags_unknown_without_cpuinfo(tmp_path):
    assert cpu_flags(tmp_path / "missing") is None
    (tmp_path / "empty").write_text("processor\t: 0\n")
    assert cpu_flags(tmp_path / "empty") is None


ALL_PINNED = PINNED_ARITHMETIC | PINNED_THREAD_VARIABLES


def test_an_x86_cpu_with_avx2_is_pinned_to_avx2_kernels_on_two_threads():
    assert pinned_arithmetic_environment(**AVX2_MACHINE) == {
        "ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"
    }


@pytest.mark.parametrize(
    "machine, flags",
    [
        ("aarch64", frozenset({"avx2", "fma"})),  # another architecture: other kernels, nothing to pin
        ("arm64", None),
        ("x86_64", frozenset({"sse4_2", "avx"})),  # no AVX2: torch would crash on AVX2 kernels
        ("x86_64", frozenset({"avx2"})),  # AVX2 without FMA
    ],
)
def test_only_the_threads_are_pinned_where_avx2_kernels_cannot_run(machine, flags):
    assert pinned_arithmetic_environment(machine=machine, flags=flags) == PINNED_THREAD_VARIABLES


def test_an_x86_cpu_whose_flags_cannot_be_read_keeps_its_kernels(monkeypatch):
    monkeypatch.setattr("cf_hf.utils.reproducibility.cpu_flags", lambda: None)
    assert pinned_arithmetic_environment(machine="x86_64") == PINNED_THREAD_VARIABLES


def test_pinning_keeps_the_users_values():
    environ = {"ATEN_CPU_CAPABILITY": "avx512", "OMP_NUM_THREADS": "8", "PATH": "/bin"}
    applied = pin_cpu_arithmetic(environ, **AVX2_MACHINE)
    assert applied == {"MKL_CBWR": "AVX2", "MKL_NUM_THREADS": "2"}
    assert environ == {"ATEN_CPU_CAPABILITY": "avx512", "OMP_NUM_THREADS": "8", "MKL_CBWR": "AVX2",
                       "MKL_NUM_THREADS": "2", "PATH": "/bin"}


def test_only_the_world_commands_are_pinned(monkeypatch):
    for name in ALL_PINNED:
        monkeypatch.delenv(name, raising=False)
    assert pin_arithmetic_for("train") == {}
    assert not set(ALL_PINNED) & set(os.environ)
    assert set(PINNED_ARITHMETIC_COMMANDS) == {"demo", "ffr-demo"}


def test_pinning_after_torch_was_imported_says_so(monkeypatch, capsys):
    import torch  # noqa: F401  (what a caller of cf_hf.cli.main in its own process may have done)

    for name in ALL_PINNED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("cf_hf.utils.reproducibility.pinned_arithmetic_environment",
                        lambda **_: dict(PINNED_ARITHMETIC))  # fmt: skip
    assert pin_arithmetic_for("demo") == PINNED_ARITHMETIC
    assert "torch was imported before ATEN_CPU_CAPABILITY and MKL_CBWR could be set" in capsys.readouterr().err


def test_a_demo_process_runs_torch_with_the_pinned_kernels():
    """`cf-hf demo` in a fresh process: the variables are set before torch loads, so torch runs 2
    threads, with AVX2 kernels wherever they can be pinned (its own choice elsewhere). The command
    fails on a bad option after pinning, before any work: the check runs in the same process, at exit."""
    expected = pinned_arithmetic_environment()
    code = (
        "import atexit, os, sys\n"
        "def report():\n"
        "    import torch\n"
        "    print('CAPABILITY', torch.backends.cpu.get_cpu_capability(), 'MKL_CBWR', os.environ.get('MKL_CBWR'),\n"
        "          'THREADS', torch.get_num_threads())\n"
        "atexit.register(report)\n"
        "from cf_hf.cli import main\n"
        "sys.exit(main(['demo', '--seeds', '0', '--output_dir', sys.argv[1]]))\n"
    )
    env = {name: value for name, value in os.environ.items() if name not in ALL_PINNED}
    result = subprocess.run([sys.executable, "-c", code, os.devnull], capture_output=True, text=True, env=env)
    assert result.returncode == 2, result.stderr[-2000:]
    if "ATEN_CPU_CAPABILITY" in expected:
        assert "CAPABILITY AVX2 MKL_CBWR AVX2 THREADS 2" in result.stdout, result.stdout
    else:
        assert "MKL_CBWR None THREADS 2" in result.stdout, result.stdout


def test_main_called_after_torch_was_imported_leaves_no_pin_in_the_environment(monkeypatch, tmp_path, capsys):
    """The pin cannot act in a process that had torch loaded; left behind, it would reach only the processes
    the caller starts later (a generation killed in a subprocess then differed from its in-process resume)."""
    import torch  # noqa: F401  (what a caller of cf_hf.cli.main in its own process may have done)

    from cf_hf.cli import main

    for name in ALL_PINNED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("cf_hf.utils.reproducibility.pinned_arithmetic_environment",
                        lambda **_: dict(ALL_PINNED))  # fmt: skip
    assert main(["ffr-demo", "--output_dir", str(tmp_path / "ffr"), "--per_class", "-5"]) == 2
    assert "torch was imported before" in capsys.readouterr().err
    assert not set(ALL_PINNED) & set(os.environ)
