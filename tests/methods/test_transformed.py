"""`TransformedCLIPModel`: an affine map of unit-norm embeddings saved with its CLIP, loaded through
`AutoModel` in a fresh process, scored by the harness as the map applied to embeddings."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from cf_hf.methods import MethodError, fold
from cf_hf.methods.embedding_transform import EmbeddingTransform
from cf_hf.methods.transformed import TransformedCLIPModel, save_transformed
from cf_hf.utils.tiny_clip import build_tiny_clip

WORDS = "a photo of the male female nurse doctor chef person".split()
DIMENSION = 16  # the tiny CLIP's projection_dim


@pytest.fixture(scope="module")
def saved_original(tmp_path_factory):
    model, processor = build_tiny_clip(texts=[" ".join(WORDS)] * 4, seed=0)
    folder = tmp_path_factory.mktemp("original")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _affine(text: bool = True) -> EmbeddingTransform:
    generator = np.random.default_rng(0)
    return EmbeddingTransform(
        method="affine_test", settings={"m": 3}, swept=("m",),
        image_matrix=np.eye(DIMENSION) + 0.3 * generator.normal(size=(DIMENSION, DIMENSION)),
        image_offset=0.2 * generator.normal(size=DIMENSION),
        text_matrix=(np.eye(DIMENSION) + 0.3 * generator.normal(size=(DIMENSION, DIMENSION))) if text else None,
        text_offset=0.2 * generator.normal(size=DIMENSION) if text else None)


def _images():
    return [np.full((32, 32, 3), value, dtype=np.uint8) for value in (10, 120, 250)]


def test_the_harness_scores_the_saved_checkpoint_as_the_map_applied_to_the_original_embeddings(saved_original, tmp_path):
    from cf_hf.evaluation.embedding import EmbeddingCache, EmbeddingEngine

    transform = _affine()
    folder = save_transformed(saved_original, transform, tmp_path / transform.name)
    cache = EmbeddingCache()
    plain = EmbeddingEngine.from_pretrained(saved_original, cache=cache)
    transformed = EmbeddingEngine.from_pretrained(folder, cache=cache)
    assert isinstance(transformed.model, TransformedCLIPModel)
    assert transformed.image_fingerprint != plain.image_fingerprint
    assert transformed.text_fingerprint != plain.text_fingerprint
    texts = ["a photo of a nurse", "a photo of a doctor", "the chef"]
    np.testing.assert_allclose(transformed.embed_images(_images()), transform.apply(plain.embed_images(_images()), "image"),
                               atol=1e-5)
    np.testing.assert_allclose(transformed.embed_texts(texts), transform.apply(plain.embed_texts(texts), "text"), atol=1e-5)


def test_the_harness_reuses_the_originals_backbone_pass_and_matches_the_models_own_forward(saved_original, tmp_path):
    from PIL import Image

    from cf_hf.evaluation.embedding import EmbeddingCache, EmbeddingEngine

    transform = _affine()
    folder = save_transformed(saved_original, transform, tmp_path / transform.name)
    cache = EmbeddingCache()
    plain = EmbeddingEngine.from_pretrained(saved_original, cache=cache)
    transformed = EmbeddingEngine.from_pretrained(folder, cache=cache)
    texts = ["a photo of a nurse", "the chef"]
    expected_images, expected_texts = plain.embed_images(_images()), plain.embed_texts(texts)
    transformed._run_images = transformed._run_texts = None  # a backbone pass would fail: the original's serves
    images, text_embeddings = transformed.embed_images(_images()), transformed.embed_texts(texts)
    np.testing.assert_allclose(images, transform.apply(expected_images, "image"), atol=1e-5)
    np.testing.assert_allclose(text_embeddings, transform.apply(expected_texts, "text"), atol=1e-5)
    model, processor = transformed.model, transformed.processor
    with torch.no_grad():
        pixels = processor(images=[Image.fromarray(image) for image in _images()], return_tensors="pt")["pixel_values"]
        own = torch.nn.functional.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
    np.testing.assert_allclose(images, own.numpy(), atol=1e-5)


def test_a_tower_without_a_map_keeps_clips_embeddings_and_other_maps_change_the_cache_key(saved_original, tmp_path):
    from cf_hf.evaluation.embedding import EmbeddingCache, EmbeddingEngine

    first = save_transformed(saved_original, _affine(text=False), tmp_path / "first")
    other = _affine(text=False)
    other.image_offset = -other.image_offset
    second = save_transformed(saved_original, other, tmp_path / "second")
    cache = EmbeddingCache()
    plain = EmbeddingEngine.from_pretrained(saved_original, cache=cache)
    engines = [EmbeddingEngine.from_pretrained(folder, cache=cache) for folder in (first, second)]
    assert engines[0].image_fingerprint != engines[1].image_fingerprint
    assert not np.allclose(engines[0].embed_images(_images()), engines[1].embed_images(_images()), atol=1e-3)
    np.testing.assert_allclose(engines[0].embed_texts(["a nurse"]), plain.embed_texts(["a nurse"]), atol=1e-6)
    assert json.loads((first / "config.json").read_text())["transformed_towers"] == ["image"]


def test_save_and_load_give_identical_embeddings_in_a_fresh_process_through_automodel(saved_original, tmp_path):
    folder = save_transformed(saved_original, _affine(), tmp_path / "checkpoint")
    model = TransformedCLIPModel.from_pretrained(folder).eval()
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ids = torch.tensor([[0, 5, 6, 7, 1]]).clamp(max=model.config.text_config.vocab_size - 1)
    with torch.no_grad():
        image = model.get_image_features(pixel_values=pixels).pooler_output
        text = model.get_text_features(input_ids=ids).pooler_output
    torch.save({"pixels": pixels, "ids": ids}, tmp_path / "inputs.pt")
    script = (
        "import sys, torch\n"
        "from transformers import AutoModel\n"
        "from cf_hf.methods import register_model_types\n"
        "register_model_types()\n"
        "inputs = torch.load(sys.argv[2])\n"
        "model = AutoModel.from_pretrained(sys.argv[1]).eval()\n"
        "with torch.no_grad():\n"
        "    image = model.get_image_features(pixel_values=inputs['pixels']).pooler_output\n"
        "    text = model.get_text_features(input_ids=inputs['ids']).pooler_output\n"
        "torch.save({'class': type(model).__name__, 'image': image, 'text': text}, sys.argv[3])\n"
    )
    subprocess.run([sys.executable, "-c", script, str(folder), str(tmp_path / "inputs.pt"), str(tmp_path / "out.pt")],
                   capture_output=True, text=True, check=True)
    loaded = torch.load(tmp_path / "out.pt")
    assert loaded["class"] == "TransformedCLIPModel"
    assert torch.equal(loaded["image"], image) and torch.equal(loaded["text"], text)
    assert torch.allclose(image.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert list(folder.glob("*.safetensors")) and not list(folder.glob("*.bin"))


def test_an_affine_map_is_refused_by_the_linear_fold(saved_original):
    from cf_hf.methods.linear import load_clip

    model, _ = load_clip(saved_original)
    with pytest.raises(MethodError, match="affine_test is not a linear map.*cannot fold"):
        fold(model, _affine())


def test_a_map_of_the_wrong_size_or_a_foreign_folder_is_refused_and_nothing_is_written(saved_original, tmp_path):
    wrong = _affine()
    wrong.text_matrix = np.eye(DIMENSION + 1)
    with pytest.raises(MethodError, match=r"text matrix is \(17, 17\).*16 dimensions"):
        save_transformed(saved_original, wrong, tmp_path / "wrong")
    assert not any(tmp_path.iterdir())
    infinite = _affine()
    infinite.image_offset[0] = np.inf
    with pytest.raises(MethodError, match="image offset has non-finite entries"):
        save_transformed(saved_original, infinite, tmp_path / "infinite")
    foreign = tmp_path / "user-files"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(MethodError, match="not a checkpoint cf_hf folded"):
        save_transformed(saved_original, _affine(), foreign)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["user-files"]
