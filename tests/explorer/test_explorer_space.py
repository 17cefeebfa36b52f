"""`cf-hf push explorer`: the Space round trip against the Hub-protocol server. The Space is pushed
through the real `huggingface_hub` client; a fresh process without cf_hf downloads it, loads it
with its own app.py and must give the answers of the local explorer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from testing_utils import TESTS
from testing_utils.hub import TOKEN, point_client_at
from testing_utils.hub_server import HubServer

from cf_hf.cli import main as cf_hf_main
from cf_hf.evaluation.embedding import EmbeddingConfig
from cf_hf.explorer import build_explorer, load_world_gallery
from hub_scripts import HubPushError

pytestmark = pytest.mark.slow  # starts several processes, a server or the demo


def push_main(argv):
    """`cf-hf push` with these options, through the dispatcher."""
    return cf_hf_main(["push", *argv])


pytest.importorskip("gradio", reason="the Space's page needs gradio: pip install 'cf_hf[explorer]'")

SPACE_REPO = "org/cf-clip-explorer"
MODEL_REPO = "org/tiny-clip"
QUERIES = [["a photo of a doctor", 5, "gender"], ["a nurse at work", 7, "skin_tone"]]
CLIENT_SCRIPT = TESTS / "scripts" / "explorer_space_client.py"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    hub = HubServer(tmp_path_factory.mktemp("hub"), token=TOKEN).start()
    yield hub
    hub.stop()


@pytest.fixture(scope="module")
def pushed(server, tiny_clip_dir, tmp_path_factory):
    """The explorer of two models on the world's gallery, pushed with `cf-hf push explorer`."""
    from hub_scripts import push_model

    work = tmp_path_factory.mktemp("explorer_space")
    argv = ["explorer", "--repo_id", SPACE_REPO, "--model", f"original={tiny_clip_dir}", f"copy={MODEL_REPO}",
            "--world_gallery", "test", "--world_per_cell", "2", "--cache_dir", str(work / "cache"), "--no_progress",
            "--space_dir", str(work / "space"), "--k", "6"]
    with pytest.MonkeyPatch.context() as monkeypatch:
        point_client_at(monkeypatch, server)
        push_model(tiny_clip_dir, MODEL_REPO, base_model="openai/clip-vit-base-patch32")  # a Hub id: the Space points to it
        assert push_main(argv) == 0
    return work


@pytest.fixture(scope="module")
def observed(server, pushed):
    (pushed / "spec.json").write_text(json.dumps({"space": SPACE_REPO, "queries": QUERIES}))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(HF_ENDPOINT=server.url, HF_HUB_DISABLE_XET="1", HF_HUB_OFFLINE="0", TRANSFORMERS_OFFLINE="0",
               HF_HOME=str(pushed / "hf_home"), HF_HUB_DISABLE_TELEMETRY="1", GRADIO_ANALYTICS_ENABLED="False",
               PYTHONPATH="")
    completed = subprocess.run([sys.executable, str(CLIENT_SCRIPT), str(pushed / "spec.json"), str(pushed / "out.json")],
                               cwd=pushed, env=env, capture_output=True, text=True, timeout=240)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads((pushed / "out.json").read_text())


def test_the_downloaded_space_gives_the_local_explorers_answers(observed, tiny_clip_dir, pushed):
    gallery = load_world_gallery("test", per_cell=2)
    config = EmbeddingConfig(cache_dir=str(pushed / "cache"), progress=False)
    local, _ = build_explorer({"original": tiny_clip_dir, "copy": tiny_clip_dir}, gallery, config)
    expected = [answer for prompt, k, attribute in QUERIES for answer in local.search(prompt, k, attribute)]
    assert [entry["model"] for entry in observed["answers"]] == [answer.model for answer in expected]
    for entry, answer in zip(observed["answers"], expected):
        assert entry["indices"] == answer.indices.tolist()
        assert entry["max_skew"] == pytest.approx(answer.max_skew) and entry["ndkl"] == pytest.approx(answer.ndkl)


def test_the_space_is_a_gradio_space_that_never_imports_cf_hf(observed):
    assert observed["sdk"] == "gradio"
    assert observed["cf_hf_imported"] is False
    files = set(observed["files"])
    assert {"app.py", "explorer_search.py", "explorer_ui.py", "fairness.py", "requirements.txt", "README.md",
            "explorer.json", "embeddings/0.npy", "embeddings/1.npy", "models/0/model.safetensors",
            "gallery/labels.csv", "gallery/images/00.png", "gallery/images/31.png"} <= files
    assert not any(name.startswith("models/1/") for name in files)  # the Hub model is a pointer, not a copy
    assert observed["manifest_models"]["copy"] == {"hub_id": MODEL_REPO, "revision": None}
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)
    assert observed["thumbnail_size"] == [32, 32]


def test_the_copies_say_they_are_copies(pushed):
    for name in ("explorer_search.py", "explorer_ui.py", "fairness.py"):
        first = (pushed / "space" / name).read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# Copied from cf_hf (cf_hf/") and "cf-hf push explorer" in first


def test_a_space_folder_that_is_not_empty_is_refused(tiny_clip_dir, tmp_path, capsys):
    (tmp_path / "space").mkdir()
    (tmp_path / "space" / "old.txt").write_text("x")
    argv = ["explorer", "--repo_id", SPACE_REPO, "--model", str(tiny_clip_dir), "--world_gallery", "test",
            "--world_per_cell", "1", "--cache_dir", "none", "--no_progress", "--space_dir", str(tmp_path / "space"),
            "--dry_run"]
    assert push_main(argv) == 2
    assert "is not empty: give a new folder for the Space" in capsys.readouterr().err


def test_a_bad_repo_id_is_refused_before_any_work():
    from hub_scripts import push_explorer

    with pytest.raises(HubPushError, match="must be 'namespace/name'"):
        push_explorer({"m": "nowhere"}, None, "no-namespace")


GALLERY_REPO = "org/world-gallery"
POINTER_SPACE_REPO = "org/cf-clip-explorer-hub-gallery"
GALLERY_CARD = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*.parquet
---

# The professions world's FairFace (test copy)
"""


def _gallery_folder(folder: Path) -> Path:
    """The world's FairFace (16 people) as a parquet dataset folder with `Image` and `ClassLabel` columns."""
    from datasets import ClassLabel, Dataset, Features, Image

    gallery = load_world_gallery("test", per_cell=1)
    features = Features({"image": Image(), **{name: ClassLabel(names=sorted(set(labels)))
                                              for name, labels in gallery.attributes.items()}})
    Dataset.from_dict({"image": list(gallery.images), **gallery.attributes}, features=features).to_parquet(
        str(folder / "data" / "train-00000-of-00001.parquet"))
    (folder / "README.md").write_text(GALLERY_CARD)
    return folder


@pytest.fixture(scope="module")
def pointer_space(server, tiny_clip_dir, tmp_path_factory):
    """A Space whose gallery images stay in a Hub dataset (`--gallery_repo`), and what a client sees."""
    from hub_scripts._common import PlannedPush, run_pushes

    work = tmp_path_factory.mktemp("explorer_pointer")
    folder = _gallery_folder(work / "gallery")
    argv = ["explorer", "--repo_id", POINTER_SPACE_REPO, "--model", f"original={tiny_clip_dir}", "--hf_gallery",
            str(folder), "--attribute_columns", "gender", "skin_tone", "--gallery_repo", GALLERY_REPO,
            "--cache_dir", str(work / "cache"), "--no_progress", "--space_dir", str(work / "space")]
    with pytest.MonkeyPatch.context() as monkeypatch:
        point_client_at(monkeypatch, server)
        run_pushes([PlannedPush(GALLERY_REPO, "dataset", folder)])
        assert push_main(argv) == 0
    (work / "spec.json").write_text(json.dumps({"space": POINTER_SPACE_REPO, "queries": QUERIES}))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(HF_ENDPOINT=server.url, HF_HUB_DISABLE_XET="1", HF_HUB_OFFLINE="0", HF_DATASETS_OFFLINE="0",
               TRANSFORMERS_OFFLINE="0", HF_HOME=str(work / "hf_home"), HF_HUB_DISABLE_TELEMETRY="1",
               GRADIO_ANALYTICS_ENABLED="False", PYTHONPATH="")
    completed = subprocess.run([sys.executable, str(CLIENT_SCRIPT), str(work / "spec.json"), str(work / "out.json")],
                               cwd=work, env=env, capture_output=True, text=True, timeout=240)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return work, folder, json.loads((work / "out.json").read_text())


def test_a_space_can_point_to_the_hub_dataset_that_holds_the_gallery(pointer_space, tiny_clip_dir):
    from cf_hf.evaluation import load_hf_gallery

    work, folder, observed = pointer_space
    assert not any(name.startswith("gallery/images/") for name in observed["files"])
    assert observed["thumbnail_size"] == [32, 32]  # read from the Hub dataset
    gallery = load_hf_gallery(str(folder), ["gender", "skin_tone"])
    config = EmbeddingConfig(cache_dir=str(work / "cache"), progress=False)
    local, _ = build_explorer({"original": tiny_clip_dir}, gallery, config)
    expected = [answer.indices.tolist() for prompt, k, attribute in QUERIES
                for answer in local.search(prompt, k, attribute)]
    assert [entry["indices"] for entry in observed["answers"]] == expected


def test_gallery_repo_needs_a_datasets_gallery(tiny_clip_dir, capsys):
    argv = ["explorer", "--repo_id", SPACE_REPO, "--model", str(tiny_clip_dir), "--world_gallery", "test",
            "--world_per_cell", "1", "--gallery_repo", GALLERY_REPO, "--cache_dir", "none", "--dry_run"]
    with pytest.raises(SystemExit):
        push_main(argv)
    assert "--gallery_repo needs --hf_gallery" in capsys.readouterr().err
