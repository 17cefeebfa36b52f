"""The `evaluate` modules: in sync with the library source, loadable offline, same answers."""

from __future__ import annotations

import evaluate
import numpy as np
import pytest

from cf_hf.metrics import MODULE_NAMES, fairness_metrics, module_path
from cf_hf.metrics.modules import build_modules, stale_module_files

KNOWN = {"max_skew": 0.693147, "min_skew": -0.405465, "ndkl": 0.693147}


def test_checked_in_modules_equal_a_fresh_build():
    assert stale_module_files() == [], "run `python -m cf_hf.metrics.modules` to rebuild the modules"


def test_build_writes_self_contained_folders(tmp_path):
    for folder in build_modules(tmp_path):
        names = {path.name for path in folder.iterdir()}
        assert {f"{folder.name}.py", "fairness.py", "README.md", "app.py", "requirements.txt"} <= names
        assert (folder / "README.md").read_text().startswith("---\n")


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_module_loads_offline_and_gives_the_known_answer(name):
    module = evaluate.load(str(module_path(name)))
    result = module.compute(predictions=[0.9, 0.8, 0.7, 0.6, 0.5, 0.4], references=[0, 0, 0, 1, 1, 1], k=3)
    assert result[name] == pytest.approx(KNOWN[name], abs=1e-6)


def test_module_takes_several_queries_and_string_labels_like_the_library():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(3, 20))
    labels = rng.choice(["x", "y", "z"], size=20)
    module = evaluate.load(str(module_path("ndkl")))
    result = module.compute(predictions=scores.T.tolist(), references=labels.tolist(), k=5,
                            desired="demographic_parity")
    expected = fairness_metrics(scores, labels, 5, desired="demographic_parity")[5]["ndkl"]
    np.testing.assert_allclose(result["per_query"], expected, atol=1e-12)
