"""Shared fixtures: tiny models built offline in temporary folders. No test touches the network."""

from __future__ import annotations

import os
import re

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# As `cf-hf` sets it (cf_hf.cli.main): spinning OpenMP threads slow torch many times on shared cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

TINY_CORPUS = [
    f"a photo of {article} {name} {where}"
    for article, name in [("a", "doctor"), ("a", "nurse"), ("a", "chef"), ("a", "firefighter")]
    for where in ["in a hospital", "in a kitchen", "near a truck", "at work", "outdoors"]
]


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    """A saved tiny `CLIPModel` + `CLIPProcessor` (32 px images, 2 layers per tower)."""
    from cf_hf.utils.tiny_clip import build_tiny_clip

    model, processor = build_tiny_clip(TINY_CORPUS)
    path = tmp_path_factory.mktemp("tiny_clip")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def world_counterfactual_dataset(tmp_path_factory):
    """A real export of the world's counterfactual dataset (`cf_hf.generation` + `dataset_builder`):
    the builder's own output, for the stages that read it. Tests only read it."""
    from dataclasses import replace

    from cf_hf.world.demo.config import DemoConfig
    from cf_hf.world.demo.stages import make_counterfactual_dataset

    root = tmp_path_factory.mktemp("world_export")
    config = replace(DemoConfig.quick(), captions_per_concept=1, decorators_per_caption=1, appearances_per_base=2)
    make_counterfactual_dataset(config, 0, root / "run", root / "dataset", quiet=True)
    return root / "dataset"


@pytest.fixture
def progress_bars_restored():
    """Re-enable the libraries' progress bars after a test that ran a command with --no_progress."""
    yield
    import datasets
    import diffusers.utils.logging
    import huggingface_hub.utils
    import transformers

    datasets.enable_progress_bars()
    diffusers.utils.logging.enable_progress_bar()
    transformers.utils.logging.enable_progress_bar()
    huggingface_hub.utils.enable_progress_bars()


def assert_no_progress_bar(stderr: str) -> None:
    """No tqdm bar (of any library) in a command's stderr: no "[00:01<00:02, ..." or "[00:01, ..."."""
    assert re.search(r"\[\d+:\d\d[<,]", stderr) is None, stderr


def pytest_collection_modifyitems(config, items):
    """A test that starts another Python process (a fresh process without cf_hf, the command line in a
    subprocess) is `slow`: each costs seconds of imports, and `make test-fast` leaves them out."""
    import inspect

    for item in items:
        function = getattr(item, "function", None)
        try:
            source = inspect.getsource(function) if function is not None else ""
        except (OSError, TypeError):
            continue
        if "subprocess." in source or any(word in item.name for word in ("fresh_process", "without_cf_hf")):
            item.add_marker(pytest.mark.slow)
