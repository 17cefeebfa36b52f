"""Package-level behaviour: what `import cf_hf` does to the process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _policy_after_import(environment: dict[str, str]) -> str:
    code = "import os, cf_hf, torch; print(os.environ['OMP_WAIT_POLICY'])"
    result = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


@pytest.mark.parametrize("user_value", [None, "ACTIVE"])
def test_import_sets_passive_openmp_waits_unless_the_user_chose(user_value):
    environment = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    if user_value is not None:
        environment["OMP_WAIT_POLICY"] = user_value
    assert _policy_after_import(environment) == (user_value or "PASSIVE")
