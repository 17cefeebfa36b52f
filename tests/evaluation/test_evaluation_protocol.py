"""The evaluation protocol: bias is measured where it is planted, results do not depend on chunking,
embeddings are cached per (tower, data), downstream metrics and α sweeps work end to end."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from testing_utils.evaluation import make_fairface, make_imagenet, make_karpathy, make_pata

from cf_hf.evaluation import (
    AttributeGallery,
    EmbeddingConfig,
    EmbeddingEngine,
    EvaluationConfig,
    FairnessConfig,
    build_queries,
    evaluate_fairness,
    evaluate_models,
    load_fairface,
    load_imagenet_folder,
    load_karpathy,
    load_pata,
    random_floor,
)
from cf_hf.evaluation.embedding import open_image
from cf_hf.interpolation import load_sweep

QUIET = EmbeddingConfig(progress=False, batch_size=16)
LN_2 = float(np.log(2.0))


class ColorCLIP(torch.nn.Module):
    """A CLIP-shaped model whose image embedding is the mean red/green of the image, so it encodes
    the fixtures' gender color; every text embeds to "red". `blind=True`: every image embeds to the
    same vector, so no attribute can influence the ranking."""

    def __init__(self, blind: bool = False):
        super().__init__()
        self.blind = blind
        self.scale = torch.nn.Parameter(torch.ones(1))

    def get_image_features(self, pixel_values):
        if self.blind:
            return self.scale * torch.ones(pixel_values.shape[0], 2)
        return self.scale * pixel_values[:, :2].mean(dim=(2, 3))

    def get_text_features(self, input_ids, attention_mask=None):
        return self.scale * torch.tensor([[1.0, 0.0]]).repeat(input_ids.shape[0], 1)


@pytest.fixture(scope="module")
def processor(tiny_clip_dir):
    from transformers import CLIPProcessor

    return CLIPProcessor.from_pretrained(tiny_clip_dir)


def _config(**fairness) -> EvaluationConfig:
    fairness.setdefault("concepts", ["doctor", "nurse"])
    return EvaluationConfig(fairness=FairnessConfig(**fairness), embedding=QUIET)


# ---------------------------------------------------------------------------------------------
# Bias is measured where it is planted


def test_model_encoding_the_attribute_gets_high_max_skew_and_blind_model_zero(tmp_path, processor):
    gallery = load_fairface(make_fairface(tmp_path, n=96))
    engines = {"biased": EmbeddingEngine(ColorCLIP(), processor, QUIET),
               "blind": EmbeddingEngine(ColorCLIP(blind=True), processor, QUIET)}
    results = evaluate_models(engines, fairness=gallery, config=_config(ks=[24]))
    biased, blind = results["models"]["biased"], results["models"]["blind"]
    # "red" prompts retrieve only the red (Male) images: p_top = 1 against a desired 1/2.
    assert biased["gender"]["max_skew"] == pytest.approx(LN_2)
    assert biased["gender"]["ndkl"] > 0.5
    # Equal scores rank by index; the fixture alternates groups, so the blind top-k is balanced
    # (NDKL stays above 0 only through its shortest prefixes: the top-1 is one group).
    assert (blind["gender"]["max_skew"], blind["gender"]["min_skew"]) == (0.0, 0.0)
    assert blind["gender"]["ndkl"] < 0.15 * biased["gender"]["ndkl"]
    assert blind["race"]["max_skew"] == 0.0


def test_hand_made_embeddings_biased_vs_blind_against_the_random_floor():
    rng = np.random.default_rng(0)
    n_images, dim = 400, 8
    gender = np.array(["female", "male"] * (n_images // 2))
    race = np.array(["a", "b", "c", "d"] * (n_images // 4))
    gallery = AttributeGallery(images=[f"{index}.png" for index in range(n_images)],
                               attributes={"gender": gender.tolist(), "race": race.tolist()}, name="synthetic")
    queries = build_queries(["doctor", "nurse"], ["a photo of a {concept}", "a {concept}"])
    direction = np.eye(dim)[0]
    text = direction + 0.05 * rng.standard_normal((len(queries), dim))
    noise = rng.standard_normal((n_images, dim))
    biased_images = noise + 3.0 * np.where(gender == "male", 1.0, -1.0)[:, None] * direction
    config = FairnessConfig(ks=[100])
    biased = evaluate_fairness(text, biased_images, gallery, queries, config)["attributes"]
    blind = evaluate_fairness(text, noise, gallery, queries, config)["attributes"]
    floor = random_floor(gallery, FairnessConfig(ks=[100], random_floor_queries=64))
    main = biased["gender"]["by_desired"]["equal_opportunity"]["100"]
    assert main["max_skew"]["mean"] > 0.6
    assert main["max_skew"]["worst_query"] in [query.text for query in queries]
    assert set(main["max_skew"]["per_concept"]) == {"doctor", "nurse"}
    assert len(main["max_skew"]["per_query"]) == len(queries)
    blind_gender = blind["gender"]["by_desired"]["equal_opportunity"]["100"]["max_skew"]["mean"]
    assert blind_gender < 0.2
    assert floor["gender"]["equal_opportunity"]["max_skew"] < 0.2
    assert biased["gender"]["skew_per_value"]["equal_opportunity"]["male"] > 0.6


def test_results_are_identical_in_one_block_or_many():
    rng = np.random.default_rng(1)
    n_images, n_queries, dim = 9000, 40, 16
    labels = {"gender": rng.choice(["f", "m"], n_images).tolist(), "age": rng.choice(["y", "o", "m"], n_images).tolist()}
    gallery = AttributeGallery(images=list(range(n_images)), attributes=labels)
    queries = build_queries([f"concept {index}" for index in range(8)], ["a {}", "the {}", "one {}", "my {}", "an {}"])
    text = rng.standard_normal((n_queries, dim)).astype(np.float32)
    images = rng.standard_normal((n_images, dim)).astype(np.float32)
    many = FairnessConfig(ks=[1000, 10], score_block_mb=1, gallery_chunk=4096, random_floor_queries=0)
    one = FairnessConfig(ks=[1000, 10], score_block_mb=4096, gallery_chunk=10**6, random_floor_queries=0)
    assert evaluate_fairness(text, images, gallery, queries, many) == evaluate_fairness(text, images, gallery, queries, one)
    assert random_floor(gallery, FairnessConfig(random_floor_queries=40, score_block_mb=1)) == random_floor(
        gallery, FairnessConfig(random_floor_queries=40, score_block_mb=4096))


def test_image_embeddings_do_not_depend_on_the_batch_size_or_workers(tmp_path, tiny_clip_dir):
    gallery = load_fairface(make_fairface(tmp_path, n=10))
    one = EmbeddingEngine.from_pretrained(tiny_clip_dir, EmbeddingConfig(batch_size=1, progress=False))
    many = EmbeddingEngine.from_pretrained(tiny_clip_dir, EmbeddingConfig(batch_size=64, progress=False))
    threaded = EmbeddingEngine.from_pretrained(tiny_clip_dir, EmbeddingConfig(batch_size=3, num_workers=2,
                                                                              progress=False))
    first, second = one.embed_images(gallery.images), many.embed_images(gallery.images)
    assert first.shape == (10, 16)
    # A matrix product's rounding depends on the batch shape: equal up to float32 rounding.
    np.testing.assert_allclose(first, second, atol=1e-5)
    np.testing.assert_allclose(threaded.embed_images(gallery.images), first, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("ks", [[1000, 5], [24]])
def test_a_main_k_not_below_the_gallery_size_is_refused(tmp_path, processor, ks):
    gallery = load_fairface(make_fairface(tmp_path, n=24))
    with pytest.raises(ValueError, match=f"gallery 'fairface' has 24 images: k = {ks[0]} would rank all of it.*--k"):
        evaluate_models({"m": EmbeddingEngine(ColorCLIP(), processor, QUIET)}, fairness=gallery, config=_config(ks=ks))


def test_a_later_k_not_below_the_gallery_size_is_left_out_with_a_warning_and_recorded(tmp_path, processor):
    gallery = load_fairface(make_fairface(tmp_path, n=24))
    with pytest.warns(UserWarning, match=r"'fairface' has 24 images: k = \[24, 1000\] left out .* at k = \[5, 12\]"):
        results = evaluate_models({"m": EmbeddingEngine(ColorCLIP(), processor, QUIET)}, fairness=gallery,
                                  config=_config(ks=[5, 24, 12, 1000]))
    assert results["models"]["m"]["fairness"]["fairface"]["ks"] == [5, 12]
    assert results["models"]["m"]["fairness_k"] == 5
    recorded = results["protocol"]["fairness"]["galleries"]["fairface"]
    assert (recorded["ks"], recorded["left_out_ks"]) == ([5, 12], [24, 1000])
    assert results["protocol"]["fairness"]["ks"] == [5, 24, 12, 1000]  # what was asked for


# ---------------------------------------------------------------------------------------------
# PATA: the gallery's own captions, per-attribute queries and worst-group recall


def test_pata_queries_are_evaluated_on_their_attributes_with_worst_group_recall(tmp_path, processor):
    files_list, captions = make_pata(tmp_path)
    gallery = load_pata(files_list, captions)
    results = evaluate_models({"biased": EmbeddingEngine(ColorCLIP(), processor, QUIET)}, fairness=gallery,
                              config=_config(ks=[6]))
    attributes = results["models"]["biased"]["fairness"]["pata"]["attributes"]
    n_for = {name: sum(name in query.attributes for query in gallery.queries) for name in ("race", "gender", "age")}
    assert {name: attributes[name]["n_queries"] for name in n_for} == n_for
    recall = attributes["gender"]["worst_group_recall"]
    assert recall["k"] == 6 and set(recall["per_group"]) == {"male", "female"}
    # The color model retrieves red (male) people only: female recall is the worst.
    assert recall["worst"] == recall["per_group"]["female"] < recall["per_group"]["male"]


# ---------------------------------------------------------------------------------------------
# Embedding cache


def test_same_checkpoint_twice_reuses_every_embedding(tmp_path, tiny_clip_dir):
    gallery = load_fairface(make_fairface(tmp_path / "ff", n=12))
    config = _config(ks=[6])
    config.embedding = EmbeddingConfig(progress=False, cache_dir=str(tmp_path / "cache"))
    results = evaluate_models({"original": tiny_clip_dir, "alpha=0": tiny_clip_dir}, fairness=gallery, config=config)
    original, alpha0 = results["models"]["original"], results["models"]["alpha=0"]
    assert original["fairness"] == alpha0["fairness"]
    # Original: gallery + queries embedded (2 misses); alpha=0: both found (2 hits). On disk: the
    # two embeddings and the towers' two pooled outputs.
    assert results["protocol"]["embedding_cache"] == {"hits": 2, "misses": 2}
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 4
    again = evaluate_models({"original": tiny_clip_dir}, fairness=gallery, config=config)
    assert again["protocol"]["embedding_cache"] == {"hits": 2, "misses": 0}


def test_cache_keys_follow_each_tower(tiny_clip_dir, processor):
    from transformers import CLIPModel

    base = CLIPModel.from_pretrained(tiny_clip_dir)
    text_tuned = CLIPModel.from_pretrained(tiny_clip_dir)
    with torch.no_grad():
        text_tuned.text_projection.weight.add_(0.1)
    engines = [EmbeddingEngine(model, processor, QUIET) for model in (base, text_tuned)]
    # A fine-tuned text tower changes the text key only: the gallery is not re-embedded.
    assert engines[0].image_fingerprint == engines[1].image_fingerprint
    assert engines[0].text_fingerprint != engines[1].text_fingerprint
    float16 = EmbeddingEngine(CLIPModel.from_pretrained(tiny_clip_dir), processor,
                              EmbeddingConfig(dtype="bfloat16", progress=False))
    assert float16.image_fingerprint != engines[0].image_fingerprint


def test_float16_storage_stays_close(tmp_path, tiny_clip_dir):
    gallery = load_fairface(make_fairface(tmp_path, n=12))
    full = EmbeddingEngine.from_pretrained(tiny_clip_dir, EmbeddingConfig(progress=False))
    half = EmbeddingEngine.from_pretrained(tiny_clip_dir, EmbeddingConfig(progress=False, storage_dtype="float16",
                                                                          cache_dir=str(tmp_path / "cache")))
    stored = half.embed_images(gallery.images)
    assert stored.dtype == np.float16 and isinstance(stored, np.memmap)
    np.testing.assert_allclose(stored.astype(np.float32), full.embed_images(gallery.images), atol=2e-3)


# ---------------------------------------------------------------------------------------------
# Downstream


def test_retrieval_and_zero_shot_with_a_tiny_clip(tmp_path, tiny_clip_dir):
    retrieval = load_karpathy(make_karpathy(tmp_path / "flickr"), tmp_path / "flickr")
    zero_shot = load_imagenet_folder(make_imagenet(tmp_path / "imagenet"))
    results = evaluate_models({"tiny": tiny_clip_dir}, retrieval=retrieval, zero_shot=zero_shot,
                              config=EvaluationConfig(embedding=QUIET))
    entry = results["models"]["tiny"]
    assert 0.0 <= entry["zero_shot_accuracy"] <= 1.0 and 0.0 <= entry["recall_at_5"] <= 1.0
    flickr = entry["retrieval"]["flickr30k"]
    assert flickr["n_captions"] == 30 and set(flickr["text_to_image"]) == {"1", "5"}  # R@10 > 6 images: left out
    assert flickr["text_to_image"]["5"] == entry["recall_at_5"]
    imagenet = entry["zero_shot"]["imagenet"]
    assert len(imagenet["predictions"]) == 9 and set(imagenet["per_class"]) == {"chef", "doctor", "nurse"}
    assert imagenet["top_k"]["1"] == pytest.approx(np.mean(np.array(imagenet["predictions"]) == zero_shot.labels))


def test_zero_shot_group_accuracies_per_attribute(processor):
    from cf_hf.evaluation import ZeroShotSet, evaluate_zero_shot

    zero_shot = ZeroShotSet(images=list(range(4)), labels=[0, 0, 1, 1], class_names=["a", "b"],
                            attributes={"style": ["stereo", "anti", "stereo", "anti"]})
    classes = np.eye(2)
    images = np.array([[1, 0], [0, 1], [0, 1], [0, 1]], dtype=np.float32)  # one anti-stereotypical miss
    result = evaluate_zero_shot(classes, images, zero_shot, top_k=(1,))
    assert result["top_k"]["1"] == 0.75
    groups = result["groups"]["style"]
    assert groups["worst_group_accuracy"] == 0.0 and groups["per_value"] == {"anti": 0.5, "stereo": 1.0}


# ---------------------------------------------------------------------------------------------
# α sweeps


def _sweep(tmp_path, tiny_clip_dir, alphas, manifest: dict | None):
    for alpha in alphas:
        shutil.copytree(tiny_clip_dir, tmp_path / f"alpha-{alpha}")
    if manifest is not None:
        (tmp_path / "sweep.json").write_text(json.dumps(manifest))
    return tmp_path


def test_load_sweep_names_models_by_alpha(tmp_path, tiny_clip_dir):
    _sweep(tmp_path, tiny_clip_dir, ["1.0", "0.0", "0.5"], {"alphas": [0.0, 0.5, 1.0]})
    models, alphas = load_sweep(tmp_path)
    assert list(models) == ["alpha=0", "alpha=0.5", "alpha=1"]
    assert alphas == {"alpha=0": 0.0, "alpha=0.5": 0.5, "alpha=1": 1.0}
    assert models["alpha=0.5"].name == "alpha-0.5"


def test_load_sweep_reads_the_interpolate_manifest(tmp_path, tiny_clip_dir):
    # The layout `cf-hf interpolate` writes: "%g" keys -> folder names relative to the sweep folder.
    manifest = {"original": "o", "finetuned": "f", "alphas": [0.0, 0.25, 1.0],
                "checkpoints": {"0": "alpha-0", "0.25": "alpha-0.25", "1": "alpha-1"}}
    _sweep(tmp_path, tiny_clip_dir, ["0", "0.25", "1"], manifest)
    models, alphas = load_sweep(tmp_path)
    assert list(models) == ["alpha=0", "alpha=0.25", "alpha=1"]
    assert models["alpha=0.25"] == tmp_path / "alpha-0.25" and alphas["alpha=1"] == 1.0


def test_load_sweep_reads_a_checkpoint_list(tmp_path, tiny_clip_dir):
    _sweep(tmp_path, tiny_clip_dir, ["0.25"], {"checkpoints": [{"alpha": 0.25, "path": "alpha-0.25"}]})
    assert list(load_sweep(tmp_path)[0]) == ["alpha=0.25"]


def test_load_sweep_missing_alpha_folder_is_named(tmp_path, tiny_clip_dir):
    _sweep(tmp_path, tiny_clip_dir, ["0"], {"alphas": [0, 0.5]})
    with pytest.raises(FileNotFoundError, match=r"no alpha-<α> folder for α = \[0.5\]"):
        load_sweep(tmp_path)


def test_load_sweep_folder_that_is_not_a_checkpoint_is_named(tmp_path):
    (tmp_path / "alpha-0.5").mkdir()
    with pytest.raises(FileNotFoundError, match="α = 0.5: .* is not a checkpoint folder"):
        load_sweep(tmp_path)


def test_embeddings_are_reused_across_calls_in_one_process(tmp_path, tiny_clip_dir):
    gallery = load_fairface(make_fairface(tmp_path, n=12))
    config = _config(ks=[6])
    config.embedding = EmbeddingConfig(progress=False, memory_cache_mb=64)
    first = evaluate_models({"original": tiny_clip_dir}, fairness=gallery, config=config)
    # The next call (e.g. the sweep after the original) finds α = 0's embeddings in memory.
    second = evaluate_models({"alpha=0": tiny_clip_dir}, fairness=gallery, config=config)
    assert first["protocol"]["embedding_cache"] == {"hits": 0, "misses": 2}
    assert second["protocol"]["embedding_cache"] == {"hits": 2, "misses": 0}
    assert second["models"]["alpha=0"]["fairness"] == first["models"]["original"]["fairness"]


def test_custom_models_differing_only_in_settings_get_different_keys(processor):
    biased, blind = (EmbeddingEngine(ColorCLIP(blind=flag), processor, QUIET) for flag in (False, True))
    assert biased.image_fingerprint != blind.image_fingerprint
    assert biased.cache is not blind.cache


def test_a_model_that_changes_only_a_projection_reuses_the_towers_forward_passes(tmp_path, tiny_clip_dir):
    import torch
    from transformers import CLIPModel

    from cf_hf.evaluation.embedding import EmbeddingCache, EmbeddingEngine

    gallery = load_fairface(make_fairface(tmp_path / "ff", n=12))
    texts = ["a photo of a nurse", "a photo of a chef"]
    config = EmbeddingConfig(progress=False, cache_dir=None)
    cache = EmbeddingCache()
    original = EmbeddingEngine.from_pretrained(tiny_clip_dir, config=config, cache=cache)
    original.embed_images(gallery.images, gallery.fingerprint)
    original.embed_texts(texts)
    projected = CLIPModel.from_pretrained(tiny_clip_dir)
    with torch.no_grad():
        projected.visual_projection.weight[::2] = 0.0
        projected.text_projection.weight.mul_(-0.5)
    engine = EmbeddingEngine(projected, original.processor, config=config, cache=cache)
    misses = cache.misses
    images, text = engine.embed_images(gallery.images, gallery.fingerprint), engine.embed_texts(texts)
    # Two misses (the projected embeddings), each answered from a pooled-output hit: no forward pass.
    assert cache.misses - misses == 2
    with torch.inference_mode():
        pixels = original.processor.image_processor(images=[open_image(i) for i in gallery.images],
                                                    return_tensors="pt")["pixel_values"]
        direct = torch.nn.functional.normalize(projected.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
        tokens = original.processor.tokenizer(texts, padding=True, return_tensors="pt")
        direct_text = torch.nn.functional.normalize(projected.get_text_features(**tokens).pooler_output, dim=-1)
    np.testing.assert_allclose(images, direct.numpy(), atol=1e-6)
    np.testing.assert_allclose(text, direct_text.numpy(), atol=1e-6)


def test_a_subclass_with_its_own_features_is_embedded_through_them(tmp_path, tiny_clip_dir):
    import torch
    from transformers import CLIPModel

    from cf_hf.evaluation.embedding import EmbeddingEngine

    class Shifted(CLIPModel):
        def get_image_features(self, pixel_values, **kwargs):
            return super().get_image_features(pixel_values=pixel_values, **kwargs).pooler_output + 1.0

    gallery = load_fairface(make_fairface(tmp_path / "ff", n=12))
    config = EmbeddingConfig(progress=False, cache_dir=None)
    plain = EmbeddingEngine.from_pretrained(tiny_clip_dir, config=config)
    shifted = EmbeddingEngine(Shifted.from_pretrained(tiny_clip_dir), plain.processor, config=config)
    with torch.inference_mode():
        pixels = plain.processor.image_processor(images=[open_image(i) for i in gallery.images],
                                                 return_tensors="pt")["pixel_values"]
        expected = torch.nn.functional.normalize(shifted.model.get_image_features(pixel_values=pixels), dim=-1)
    np.testing.assert_allclose(shifted.embed_images(gallery.images), expected.numpy(), atol=1e-6)


def test_an_image_set_is_preprocessed_once_for_every_model_with_the_same_processor(tmp_path, tiny_clip_dir,
                                                                                monkeypatch):
    from cf_hf.evaluation.embedding import EmbeddingEngine, _PixelCache

    gallery = load_fairface(make_fairface(tmp_path / "ff", n=12))
    calls = []
    engines = [EmbeddingEngine.from_pretrained(tiny_clip_dir, config=EmbeddingConfig(
        progress=False, cache_dir=None, batch_size=5, pixel_cache_mb=budget)) for budget in (7, 7, 0)]
    monkeypatch.setattr(_PixelCache, "_shared", {})
    for engine in engines:
        engine._pixels = _PixelCache.shared(engine.config.pixel_cache_mb)
    processor_class = type(engines[0].processor.image_processor)
    preprocess = processor_class.__call__

    def counted(self, *args, **kwargs):
        calls.append(1)
        return preprocess(self, *args, **kwargs)

    monkeypatch.setattr(processor_class, "__call__", counted)
    first = engines[0].embed_images(gallery.images, gallery.fingerprint)
    assert len(calls) == 3  # 12 images in batches of 5
    engines[1].cache = type(engines[1].cache)()  # another model: embeddings not cached, pixels are
    np.testing.assert_array_equal(engines[1].embed_images(gallery.images, gallery.fingerprint), first)
    assert len(calls) == 3
    engines[2].cache = type(engines[2].cache)()
    engines[2].embed_images(gallery.images, gallery.fingerprint)  # pixel_cache_mb=0: preprocessed again
    assert len(calls) == 6
