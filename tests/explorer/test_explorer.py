"""The retrieval explorer without a browser: its answers equal the library's ranking and metrics on
the harness's embeddings, it reads the embedding cache instead of re-embedding, every bad input is
one clear message, and `cf-hf explore` loads every kind of gallery the harness loads."""

from __future__ import annotations

import numpy as np
import pytest
from testing_utils.evaluation import make_fairface

from cf_hf.cli import main as cf_hf_main
from cf_hf.evaluation.embedding import EmbeddingConfig
from cf_hf.explorer import ExplorerError, build_explorer, load_world_gallery
from cf_hf.explorer.ui import answer_outputs, shares_html
from cf_hf.metrics.fairness import fairness_metrics, top_k_indices


def explore_main(argv):
    """`cf-hf explore` with these options, through the dispatcher."""
    return cf_hf_main(["explore", *argv])


PER_CELL = 2  # 32 people of the world's FairFace: 16 (gender, skin tone, age) cells


@pytest.fixture(scope="module")
def world_gallery():
    return load_world_gallery("test", per_cell=PER_CELL)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("explorer_cache")


@pytest.fixture(scope="module")
def explorer(tiny_clip_dir, world_gallery, cache_dir):
    config = EmbeddingConfig(cache_dir=str(cache_dir), progress=False)
    explorer, engines = build_explorer({"original": tiny_clip_dir, "cf": tiny_clip_dir}, world_gallery, config)
    return explorer, engines


def test_each_answer_is_the_librarys_top_k_and_metrics_on_the_harness_embeddings(explorer, world_gallery):
    explorer, engines = explorer
    engine = engines["original"]
    answer = explorer.search("a photo of a doctor", 5, "gender", ["original"])[0]
    scores = engine.embed_images(world_gallery.images, world_gallery.fingerprint) @ engine.embed_texts(
        ["a photo of a doctor"])[0]
    labels = world_gallery.attributes["gender"]
    assert answer.indices.tolist() == top_k_indices(scores, 5).tolist()
    np.testing.assert_allclose(answer.scores, scores[answer.indices], rtol=1e-5)
    expected = fairness_metrics(scores, labels, 5, metrics=("max_skew", "ndkl"))[5]
    assert answer.max_skew == pytest.approx(float(expected["max_skew"][0]))
    assert answer.ndkl == pytest.approx(float(expected["ndkl"][0]))
    assert answer.labels == [labels[index] for index in answer.indices]
    assert answer.top_k_shares == {value: answer.labels.count(value) / 5 for value in sorted(set(labels))}
    assert answer.gallery_shares == {value: labels.count(value) / len(labels) for value in sorted(set(labels))}


def test_every_model_answers_in_the_order_given(explorer):
    explorer, _ = explorer
    answers = explorer.search("a nurse at work", 3, "age", ["cf", "original"])
    assert [answer.model for answer in answers] == ["cf", "original"]
    assert answers[0].indices.tolist() == answers[1].indices.tolist()  # the same checkpoint twice


def test_a_second_start_reads_the_memory_mapped_cache_instead_of_embedding(tiny_clip_dir, world_gallery, cache_dir,
                                                                           explorer, monkeypatch):
    from cf_hf.evaluation.embedding import EmbeddingEngine

    def no_embedding(*args, **kwargs):
        raise AssertionError("the gallery was embedded again")

    monkeypatch.setattr(EmbeddingEngine, "_progress", no_embedding)
    monkeypatch.setattr("cf_hf.evaluation.embedding.EmbeddingCache._shared", {})  # a fresh process's cache
    config = EmbeddingConfig(cache_dir=str(cache_dir), progress=False)
    again, _ = build_explorer({"original": tiny_clip_dir}, world_gallery, config)
    assert isinstance(again.models["original"].image_embeddings, np.memmap)


@pytest.mark.parametrize(("prompt", "k", "attribute", "models", "message"), [
    ("   ", 5, "gender", None, "the prompt is empty"),
    ("a doctor", 32, "gender", None, "k = 32 is not below the size of the gallery 'world_fairface' (32 images)"),
    ("a doctor", 0, "gender", None, "k must be a whole number between 1 and 31"),
    ("a doctor", "five", "gender", None, "k must be a whole number of images, got 'five'"),
    ("a doctor", 5, "race", None, "has no attribute 'race': it has gender, skin_tone, age"),
    ("a doctor", 5, "gender", ["original", "clip-clip"], "no model named 'clip-clip': the models are original, cf"),
    ("a doctor", 5, "gender", [], "choose at least one model"),
])  # fmt: skip
def test_bad_inputs_are_one_clear_message_in_the_page(explorer, prompt, k, attribute, models, message):
    explorer, _ = explorer
    with pytest.raises(ExplorerError, match=message.replace("(", r"\(").replace(")", r"\)")):
        explorer.search(prompt, k, attribute, models)
    text, columns = answer_outputs(explorer, lambda index: None, prompt, k, attribute, models)
    assert text.startswith("**Cannot search:**") and message in text
    assert columns == [("", [], "")] * 2


def test_the_page_shows_a_grid_a_share_bar_and_the_metrics_per_model(explorer, world_gallery):
    from cf_hf.explorer import gallery_image

    explorer, _ = explorer
    text, columns = answer_outputs(explorer, lambda index: gallery_image(world_gallery, index), "a chef", 4,
                                   "skin_tone", ["cf"])
    assert "Top-4 of 32 images of **world_fairface**" in text
    (original_heading, original_items, _), (heading, items, bars) = columns
    assert "not selected" in original_heading and original_items == []
    assert heading.startswith("### cf\nMaxSkew@4") and "NDKL@4" in heading
    assert len(items) == 4 and all(image.size[0] >= 128 for image, _ in items)
    assert bars.count('class="share-row"') == len(explorer.values("skin_tone"))


def test_share_bars_escape_label_values(explorer):
    explorer, _ = explorer
    answer = explorer.search("a chef", 2, "gender")[0]
    answer.top_k_shares = {"<b>x</b>": 1.0}
    answer.gallery_shares = {"<b>x</b>": 0.5}
    assert "<b>x</b>" not in shares_html(answer, "gender") and "&lt;b&gt;x&lt;/b&gt;" in shares_html(answer, "gender")


def test_embeddings_of_another_gallery_size_are_refused():
    from cf_hf.explorer import Explorer, ExplorerModel

    model = ExplorerModel(np.zeros((3, 4), dtype=np.float32), lambda prompt: np.ones(4))
    with pytest.raises(ExplorerError, match="has 2 images but the embeddings of {'m': 3}"):
        Explorer({"m": model}, {"gender": ["a", "b"]})
    with pytest.raises(ExplorerError, match="attribute 'gender': the attribute has a single value"):
        Explorer({"m": model}, {"gender": ["a", "a", "a"]})


def test_check_answers_a_prompt_on_a_fairface_folder(tiny_clip_dir, tmp_path, capsys):
    root = make_fairface(tmp_path / "fairface", n=16)
    argv = ["--model", f"tiny={tiny_clip_dir}", "--fairface", str(root), "--cache_dir", str(tmp_path / "cache"),
            "--no_progress", "--check", "a photo of a doctor", "--k", "4", "--attribute", "race"]
    assert explore_main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("tiny: MaxSkew@4 ") and "race: " in out and "(gallery 25%)" in out
    assert len(out.splitlines()[1].split()) == 1 + 4  # "top-4:" and four indices


def test_check_answers_a_prompt_on_a_datasets_gallery(tiny_clip_dir, world_gallery, tmp_path, capsys):
    from datasets import ClassLabel, Dataset, Features, Image

    labels = world_gallery.attributes["gender"]
    features = Features({"image": Image(), "gender": ClassLabel(names=sorted(set(labels)))})
    Dataset.from_dict({"image": list(world_gallery.images), "gender": labels}, features=features).save_to_disk(
        tmp_path / "gallery")
    argv = ["--model", str(tiny_clip_dir), "--hf_gallery", str(tmp_path / "gallery"), "--attribute_columns", "gender",
            "--cache_dir", "none", "--no_progress", "--check", "a chef", "--k", "3"]
    assert explore_main(argv) == 0
    assert capsys.readouterr().out.startswith(f"{tiny_clip_dir.name}: MaxSkew@3 ")


@pytest.mark.parametrize(("argv", "message"), [
    (["--model", "m=x", "--world_gallery", "test", "--fairface", "y"], "give exactly one gallery"),
    (["--model", "m=x"], "give exactly one gallery"),
    (["--world_gallery", "test"], "give at least one --model"),
])  # fmt: skip
def test_option_errors_name_the_fix(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        explore_main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_missing_checkpoint_and_a_bad_k_are_one_line(tmp_path, capsys):
    argv = ["--model", f"gone={tmp_path / 'gone'}", "--world_gallery", "test", "--world_per_cell", "1",
            "--cache_dir", "none", "--no_progress", "--check", "a chef"]
    assert explore_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("cf-hf explore: error: ") and "gone" in err and "Traceback" not in err


def test_explore_help_imports_no_heavy_library_and_every_option_has_help():
    import argparse
    import subprocess
    import sys

    from cf_hf.cli.explore import build_parser

    code = ("import sys\nfrom cf_hf.cli import main\ntry:\n    main(['explore', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'gradio') if m in sys.modules))")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0 and "usage: cf-hf explore" in completed.stdout
    assert completed.stdout.strip().splitlines()[-1] == "[]"
    for action in build_parser()._actions:
        if not isinstance(action, argparse._HelpAction):
            assert action.help and "default" not in action.help.lower(), action.option_strings


@pytest.mark.slow
def test_cf_hf_explore_serves_the_page_on_loopback(tiny_clip_dir):
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    pytest.importorskip("gradio", reason="the explorer page needs gradio: pip install 'cf_hf[explorer]'")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "cf_hf.cli", "explore", "--model", f"tiny={tiny_clip_dir}", "--world_gallery",
               "test", "--world_per_cell", "1", "--cache_dir", "none", "--no_progress", "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    try:
        line = server.stdout.readline()
        assert f"explorer of tiny on 'world_fairface' (16 images): http://127.0.0.1:{port}" in line, line
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    page = response.read().decode()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read()[-2000:]
                time.sleep(0.5)
        assert "cf_hf retrieval explorer" in page
    finally:
        server.terminate()
        server.wait(timeout=30)
