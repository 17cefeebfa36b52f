"""SFID and SPD saved with their CLIP: `fit_sfid`/`fit_spd` write one checkpoint per swept setting,
the checkpoint loads through `AutoModel` in a fresh process, and the evaluation harness scores it as
the fitted map applied to the original's embeddings (1e-5).

The checkpoints are `TransformedCLIPModel`s (`cf_hf.methods.transformed`, branch new-a): until that
module is merged these tests are skipped."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

transformed = pytest.importorskip("cf_hf.methods.transformed", reason="save_transformed lands with branch new-a")

TEXTS = ["a photo of a nurse", "a photo of a doctor in a hospital", "a chef"]


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    from testing_utils.evaluation import make_fairface

    from cf_hf.evaluation import load_fairface

    return load_fairface(make_fairface(tmp_path_factory.mktemp("fairface"), n=40))


def _fits(method, original, output_dir, gallery):
    from cf_hf.methods import get_method

    setting = {"sfid": {"prune_counts": [1, 4]}, "spd": {"axes": [1, 2]}}[method]
    # The test images' colour encodes gender (every sample confidently told): fit on race, which it does not.
    return get_method(method).fit(original, output_dir, gallery, "race", **setting)


@pytest.fixture(scope="module", params=["sfid", "spd"])
def saved(request, tiny_clip_dir, gallery, tmp_path_factory):
    """(checkpoints the method's fit wrote, the transforms it fitted) for each method."""
    from cf_hf.methods.sfid.fit import sfid_gallery_transforms
    from cf_hf.methods.spd.fit import spd_gallery_transforms

    method = request.param
    checkpoints = _fits(method, tiny_clip_dir, tmp_path_factory.mktemp(method), gallery)
    transforms = (sfid_gallery_transforms(tiny_clip_dir, gallery, "race", [1, 4]) if method == "sfid"
                  else spd_gallery_transforms(tiny_clip_dir, gallery, "race", [1, 2]))
    return checkpoints, transforms


def test_the_harness_scores_the_saved_checkpoint_as_the_fit_applied_to_embeddings(saved, tiny_clip_dir, gallery):
    from cf_hf.evaluation.embedding import EmbeddingCache, EmbeddingEngine

    checkpoints, transforms = saved
    assert [checkpoint.name for checkpoint in checkpoints] == [transform.name for transform in transforms]
    cache = EmbeddingCache()
    plain = EmbeddingEngine.from_pretrained(tiny_clip_dir, cache=cache)
    images, texts = plain.embed_images(gallery.images, gallery.fingerprint), plain.embed_texts(TEXTS)
    for checkpoint, transform in zip(checkpoints, transforms):
        engine = EmbeddingEngine.from_pretrained(checkpoint.path, cache=cache)
        np.testing.assert_allclose(engine.embed_images(gallery.images, gallery.fingerprint),
                                   transform.apply(images, "image"), atol=1e-5)
        np.testing.assert_allclose(engine.embed_texts(TEXTS), transform.apply(texts, "text"), atol=1e-5)


def test_a_saved_fit_loads_through_automodel_in_a_fresh_process(saved, tmp_path):
    import torch

    checkpoint = saved[0][-1]
    model = transformed.TransformedCLIPModel.from_pretrained(checkpoint.path).eval()
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        image = model.get_image_features(pixel_values=pixels).pooler_output
    torch.save(pixels, tmp_path / "pixels.pt")
    script = (
        "import sys, torch\n"
        "from transformers import AutoModel\n"
        "from cf_hf.methods import register_model_types\n"
        "register_model_types()\n"
        "model = AutoModel.from_pretrained(sys.argv[1]).eval()\n"
        "with torch.no_grad():\n"
        "    image = model.get_image_features(pixel_values=torch.load(sys.argv[2])).pooler_output\n"
        "torch.save({'class': type(model).__name__, 'image': image}, sys.argv[3])\n"
    )
    subprocess.run([sys.executable, "-c", script, str(checkpoint.path), str(tmp_path / "pixels.pt"),
                    str(tmp_path / "out.pt")], capture_output=True, text=True, check=True)
    loaded = torch.load(tmp_path / "out.pt")
    assert loaded["class"] == "TransformedCLIPModel"
    assert torch.equal(loaded["image"], image)


def test_a_fit_refuses_a_foreign_output_folder_before_writing_any_checkpoint(tiny_clip_dir, gallery, tmp_path):
    from cf_hf.methods import MethodError

    foreign = tmp_path / "methods" / "sfid-m=4"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(MethodError, match="not a checkpoint cf_hf folded"):
        _fits("sfid", tiny_clip_dir, tmp_path / "methods", gallery)
    assert sorted(path.name for path in (tmp_path / "methods").iterdir()) == ["sfid-m=4"]


def test_cf_hf_compare_fits_sfid_and_spd_on_the_labelled_set_and_tables_what_they_need(tiny_clip_dir, tmp_path, capsys):
    import json

    from testing_utils.evaluation import make_fairface

    from cf_hf.cli import main

    fairface = make_fairface(tmp_path / "fairface", n=40)
    common = ["--original", str(tiny_clip_dir), "--fairface", str(fairface), "--k", "10", "--concepts", "nurse", "chef",
              "--no_progress", "--no_plots", "--attribute", "race"]
    labelled = ["--clip_clip_fairface", str(fairface), "--clip_clip_fairface_csv", str(fairface / "fairface_label_val.csv")]
    assert main(["compare", *common, *labelled, "--methods", "sfid", "spd", "--sfid_prune_count", "2", "4",
                 "--spd_axes", "1", "--output_dir", str(tmp_path / "out")]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert list(results["models"]) == ["original", "sfid-m=2", "sfid-m=4", "spd-axes=1"]
    assert results["methods"]["spd-axes=1"]["settings"]["axes"] == 1
    assert all(results["methods"][name]["query_ms"] > 0 for name in results["models"])
    report = (tmp_path / "out" / "report.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| model | method |"))
    assert "| labels | prompts | training | reference set at query time | fit (s) | ms / query |" in header
    row = next(line for line in report.splitlines() if line.startswith("| sfid-m=2 |")).split(" | ")
    needs = row[-6:-2]  # before fit (s) and ms / query
    assert needs == ["yes", "–", "–", "–"]
    capsys.readouterr()
    assert main(["compare", *common, "--methods", "spd", "--output_dir", str(tmp_path / "bad")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--methods spd needs --clip_clip_fairface" in error[0]
    assert main(["compare", *common, *labelled, "--methods", "sfid", "--sfid_prune_count", "10000",
                 "--output_dir", str(tmp_path / "too-many")]) == 2
    assert "m must be between 1 and the embedding size" in capsys.readouterr().err
    assert not (tmp_path / "too-many" / "methods").exists()
    assert main(["compare", *common, "--attribute", "race", "hair", *labelled, "--methods", "sfid",
                 "--output_dir", str(tmp_path / "two")]) == 2
    assert "--attribute hair: not among --fairface_attributes" in capsys.readouterr().err
