"""Package-level behaviour: what `import cf_hf` does to the process (nothing), and its public API."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import cf_hf


def _run(code: str, environment: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def _environment(user_value: str | None) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    if user_value is not None:
        environment["OMP_WAIT_POLICY"] = user_value
    return environment


def test_import_changes_no_environment_and_loads_no_heavy_library():
    code = ("import os, sys; before = dict(os.environ); import cf_hf; "
            "print(dict(os.environ) == before, sorted(m for m in ('torch', 'transformers', 'diffusers', 'datasets') "
            "if m in sys.modules))")
    assert _run(code, _environment(None)) == "True []"


@pytest.mark.parametrize("user_value", [None, "ACTIVE"])
def test_the_command_sets_passive_openmp_waits_unless_the_user_chose(user_value):
    code = "import os; from cf_hf.cli import main; main(['--version']); print(os.environ['OMP_WAIT_POLICY'])"
    assert _run(code, _environment(user_value)).splitlines()[-1] == (user_value or "PASSIVE")


def test_every_public_name_resolves_and_is_listed():
    for name in cf_hf.__all__:
        assert getattr(cf_hf, name) is not None, name
    assert set(cf_hf.__all__) <= set(dir(cf_hf))
    assert cf_hf.train_counterfactual.__module__ == "cf_hf.methods.counterfactual.trainer"
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        cf_hf.nothing_here  # noqa: B018


def test_the_registry_lists_every_method_folder():
    from pathlib import Path

    folders = {path.name for path in (Path(cf_hf.__file__).parent / "methods").iterdir()
               if path.is_dir() and (path / "__init__.py").is_file()}
    assert folders == set(cf_hf.METHODS)
    for name, spec in cf_hf.METHODS.items():
        assert callable(spec.fit), name
        assert cf_hf.get_method(name) is spec
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        cf_hf.get_method("nope")
