"""Installing as users install: `python -m build` makes a wheel that carries every file of the package
(the world's shipped original and tokenizer, YAML, templates, the fast help), and the wheel, installed
into a fresh virtual environment with the locked versions, runs `cf-hf --version`, `cf-hf demo --quick`
and loads the shipped world original — from the installed package, never from this source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import cf_hf

pytestmark = pytest.mark.slow  # builds a wheel, installs torch and the dependencies, runs the demo

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cf_hf", "dataset_builder", "model_card", "hub_scripts")
# torch first and from pip's own configuration (a local wheel, a CUDA index), as the Makefile does.
TORCH_REQUIREMENT = "torch==2.13.0"
INSTALL_TIMEOUT_SECONDS = 1200


def _run(command: list[str], cwd: Path, timeout: int = INSTALL_TIMEOUT_SECONDS,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess:  # fmt: skip
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _tracked_files() -> list[str]:
    """The repository's tracked files (what a fresh clone holds)."""
    listing = _run(["git", "ls-files", "-z"], cwd=ROOT, timeout=60).stdout
    return [path for path in listing.split("\0") if path and (ROOT / path).is_file()]


def _package_files(tracked: list[str]) -> set[str]:
    """Every tracked file of the installed packages: what the wheel must carry."""
    return {path for path in tracked if path.split("/")[0] in PACKAGES}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel `python -m build` makes from a copy of the tracked files (the build writes its
    build/ and egg-info folders there, not in the working tree)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    for path in _tracked_files():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, source / path)
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(work / "dist"), str(source)], cwd=work)
    (built,) = (work / "dist").glob("cf_hf-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A fresh virtual environment with torch, then the wheel under constraints.txt; and the
    environment to run it in (offline, without this source tree on PYTHONPATH)."""
    work = tmp_path_factory.mktemp("venv")
    venv = work / "venv"
    # Without PYTHONPATH: pip would take what it finds there as installed, and leave it out of the venv.
    env = {name: value for name, value in os.environ.items() if name not in {"PYTHONPATH", "PYTHONHOME"}}
    _run([sys.executable, "-m", "venv", str(venv)], cwd=work, env=env)
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", "--no-compile", TORCH_REQUIREMENT], cwd=work, env=env)
    _run([str(python), "-m", "pip", "install", "-q", "--no-compile", "-c", str(ROOT / "constraints.txt"), str(wheel)],
         cwd=work, env=env)  # fmt: skip
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", CF_HF_CACHE=str(work / "cache"))
    return venv, env


def test_the_wheel_carries_every_file_of_the_packages(wheel):
    with zipfile.ZipFile(wheel) as archive:
        carried = {name for name in archive.namelist() if ".dist-info/" not in name}
    missing = _package_files(_tracked_files()) - carried
    assert not missing, f"setup.cfg's package_data leaves out: {sorted(missing)}"
    for data_file in ("cf_hf/world/original_clip/model.safetensors", "cf_hf/world/tokenizer/tokenizer.json",
                      "cf_hf/cli/help.json", "cf_hf/concepts/professions.yaml",
                      "cf_hf/metrics/modules/templates/module.py.tmpl"):  # fmt: skip
        assert data_file in carried


def test_the_installed_command_prints_its_version(installed, tmp_path):
    venv, env = installed
    result = _run([str(venv / "bin" / "cf-hf"), "--version"], cwd=tmp_path, timeout=120, env=env)
    assert result.stdout.strip() == f"cf-hf {cf_hf.__version__}"


def test_the_installed_package_loads_the_shipped_world_original(installed, tmp_path):
    venv, env = installed
    code = (
        "from transformers import CLIPModel, CLIPProcessor\n"
        "from cf_hf.world.original import ORIGINAL_DIR, read_record, shipped_original\n"
        "from cf_hf.world.demo.config import DemoConfig\n"
        "config = DemoConfig.full()\n"
        "path, why = shipped_original(None, config.corpus, config.pretrain)\n"
        "model = CLIPModel.from_pretrained(path)\n"
        "CLIPProcessor.from_pretrained(path)\n"
        "print('ORIGINAL', path, why, model.config.projection_dim, read_record()['weights_sha256'][:12])\n"
    )
    result = _run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path, timeout=300, env=env)
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith(f"ORIGINAL {venv}/lib/") and "site-packages/cf_hf/world/original_clip shipped 64 " in line


def test_the_installed_quick_demo_runs(installed, tmp_path):
    venv, env = installed
    result = _run([str(venv / "bin" / "cf-hf"), "demo", "--quick", "--quiet", "--output_dir", str(tmp_path / "demo")],
                  cwd=tmp_path, timeout=900, env=env)  # fmt: skip
    assert "| original |" in result.stdout and "chosen α" in result.stdout
    assert (tmp_path / "demo" / "results.json").is_file()


def test_the_installed_fast_help_loads_no_heavy_library(installed, tmp_path):
    venv, env = installed
    code = ("import sys; from cf_hf.cli import main; main(['train', '--help']); "
            "print('HEAVY', sorted(m for m in ('torch', 'transformers') if m in sys.modules))")  # fmt: skip
    result = _run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path, timeout=300, env=env)
    assert "usage: cf-hf train" in result.stdout and "HEAVY []" in result.stdout
