"""The training-free debiasing methods: their fits, the fold into a plain CLIP checkpoint, bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from cf_hf.methods import METHOD_CONFIG_FIELD, MethodError, fold, save_folded
from cf_hf.methods.biased_prompts.projection import (
    biased_prompts_map,
    biased_prompts_maps,
    load_biased_prompts,
)
from cf_hf.methods.clip_clip.estimator import clip_clip_maps, kept_dimensions, mutual_information
from cf_hf.utils.tiny_clip import build_tiny_clip

WORDS = "a photo of the male female nurse doctor chef person in hospital kitchen".split()


@pytest.fixture(scope="module")
def tiny_clip():
    model, processor = build_tiny_clip(texts=[" ".join(WORDS)] * 4, seed=0)
    return model.eval(), processor


@pytest.fixture(scope="module")
def saved_original(tiny_clip, tmp_path_factory):
    """The tiny CLIP saved as a checkpoint folder (weights, config, processor)."""
    model, processor = tiny_clip
    folder = tmp_path_factory.mktemp("original")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def fairface_gallery(tmp_path_factory):
    from testing_utils.evaluation import make_fairface

    from cf_hf.evaluation import load_fairface

    return load_fairface(make_fairface(tmp_path_factory.mktemp("fairface"), n=40))


def _text_embeddings(model, processor, texts):
    tokens = processor.tokenizer(list(texts), padding=True, return_tensors="pt")
    with torch.no_grad():
        output = model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
    features = getattr(output, "pooler_output", output)
    return torch.nn.functional.normalize(features.double(), dim=-1).numpy()


def _image_embeddings(model, pixels):
    with torch.no_grad():
        output = model.get_image_features(pixel_values=pixels)
    features = getattr(output, "pooler_output", output)
    return torch.nn.functional.normalize(features.double(), dim=-1).numpy()


def _planted(n=600, dimension=12, signal=(3, 7), seed=0):
    generator = np.random.default_rng(seed)
    labels = generator.integers(0, 2, size=n)
    embeddings = generator.normal(size=(n, dimension))
    for column in signal:
        embeddings[:, column] += 2.0 * labels
    return embeddings, labels


def test_clip_clip_drops_the_dimensions_that_carry_a_planted_attribute_signal():
    embeddings, labels = _planted()
    (fit,) = clip_clip_maps(embeddings, labels, keep=[10], attribute="gender")
    kept = np.flatnonzero(np.diag(fit.image_map))
    assert sorted(set(range(12)) - set(kept)) == [3, 7]
    assert np.array_equal(fit.image_map, fit.text_map)
    assert fit.name == "clip_clip-keep=10"


def test_clip_clip_with_several_attributes_drops_the_dimensions_of_each():
    embeddings, gender = _planted(signal=(3,), seed=0)
    skin_tone = np.random.default_rng(5).integers(0, 3, size=len(gender))
    embeddings[:, 9] += 2.0 * skin_tone
    (fit,) = clip_clip_maps(embeddings, {"gender": gender, "skin_tone": skin_tone}, keep=[10])
    assert sorted(set(range(12)) - set(np.flatnonzero(np.diag(fit.image_map)))) == [3, 9]
    assert fit.settings["attribute"] == "gender+skin_tone"
    assert set(fit.fitted_on["mutual_information"]) == {"gender", "skin_tone"}


def test_clip_clip_mutual_information_ranks_informative_dimensions_highest():
    embeddings, labels = _planted()
    information = mutual_information(embeddings, labels)
    assert set(np.argsort(information)[-2:]) == {3, 7}
    assert kept_dimensions(information, 12).all()


def test_biased_prompts_make_the_paired_prompts_embed_alike_when_lambda_is_large(tiny_clip):
    model, processor = tiny_clip
    prompts = load_biased_prompts("gender", calibration_concepts=["nurse", "doctor"])
    assert prompts.pairs == (("A photo of a female nurse.", "A photo of a male nurse."),
                             ("A photo of a female doctor.", "A photo of a male doctor."))
    spurious = _text_embeddings(model, processor, prompts.spurious)
    first = _text_embeddings(model, processor, [pair[0] for pair in prompts.pairs])
    second = _text_embeddings(model, processor, [pair[1] for pair in prompts.pairs])

    def gap(lam):
        projection = biased_prompts_map(spurious, first, second, lam)
        mapped_first, mapped_second = first @ projection.T, second @ projection.T
        cosine = (mapped_first * mapped_second).sum(1) / (
            np.linalg.norm(mapped_first, axis=1) * np.linalg.norm(mapped_second, axis=1))
        return 1 - cosine.min()

    assert gap(0.0) > 1e-3
    assert gap(1e6) < 1e-6
    # The spurious prompts' span is projected out.
    projection = biased_prompts_map(spurious, first, second, 0.0)
    assert np.abs(spurious @ projection.T).max() < 1e-8


@pytest.mark.slow
def test_folded_checkpoints_load_without_cf_hf_and_give_the_methods_similarities(tiny_clip, saved_original, tmp_path):
    model, processor = tiny_clip
    original = saved_original
    texts = ["a photo of a nurse", "a male doctor in the hospital", "a female chef in the kitchen", "a person"]
    pixels = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.save(pixels, tmp_path / "pixels.pt")
    original_images = _image_embeddings(model, pixels)
    original_texts = _text_embeddings(model, processor, texts)

    images_for_fit = np.random.default_rng(0).normal(size=(200, model.config.projection_dim))
    clip_clip = clip_clip_maps(images_for_fit, np.arange(200) % 2, keep=[9], attribute="gender")[0]
    prompts = load_biased_prompts("gender", ["person"], calibration_concepts=["nurse", "doctor", "chef"])
    biased = biased_prompts_maps(lambda batch: _text_embeddings(model, processor, batch), prompts)[0]

    for method in (clip_clip, biased):
        folder = save_folded(original, method, tmp_path / method.name)
        script = (
            "import json, sys, torch\n"
            "from transformers import CLIPModel, CLIPProcessor\n"
            f"model = CLIPModel.from_pretrained({str(folder)!r}).eval()\n"
            f"processor = CLIPProcessor.from_pretrained({str(folder)!r})\n"
            f"tokens = processor.tokenizer({texts!r}, padding=True, return_tensors='pt')\n"
            f"pixels = torch.load({str(tmp_path / 'pixels.pt')!r})\n"
            "with torch.no_grad():\n"
            "    out = model(input_ids=tokens['input_ids'], attention_mask=tokens['attention_mask'], pixel_values=pixels)\n"
            "scale = model.logit_scale.exp().item()\n"
            "assert not any(name.startswith('cf_hf') for name in sys.modules)\n"
            "print(json.dumps({'similarity': (out.logits_per_text / scale).tolist(),"
            f" 'record': model.config.{METHOD_CONFIG_FIELD}}}))\n"
        )
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
        loaded = json.loads(result.stdout.strip().splitlines()[-1])
        expected = method.apply(original_texts, "text") @ method.apply(original_images, "image").T
        np.testing.assert_allclose(np.array(loaded["similarity"]), expected, atol=1e-5)
        assert loaded["record"]["method"] == method.method
        assert loaded["record"]["settings"] == method.settings


def test_bad_input_is_refused_with_a_clear_error(tiny_clip, tmp_path):
    embeddings, labels = _planted()
    with pytest.raises(MethodError, match="single value"):
        clip_clip_maps(embeddings, np.zeros(len(labels)), keep=[4], attribute="gender")
    with pytest.raises(MethodError, match="between 1 and the embedding size 12"):
        clip_clip_maps(embeddings, labels, keep=[13], attribute="gender")
    with pytest.raises(MethodError, match=r"no 'gender' label \(rows \[1\]\)"):
        clip_clip_maps(embeddings[:3], [0, None, 1], keep=[4], attribute="gender")
    with pytest.raises(MethodError, match="no value"):
        load_biased_prompts("gender", ["nurse"], values=["female", "martian"])
    with pytest.raises(MethodError, match="no attribute 'religion'"):
        load_biased_prompts("religion", ["nurse"])
    model, _ = tiny_clip
    wrong = clip_clip_maps(np.random.default_rng(0).normal(size=(50, 20)), np.arange(50) % 2, keep=[5],
                          attribute="gender")[0]
    with pytest.raises(MethodError, match="20, 20.*16 dimensions"):
        fold(model, wrong)
    with pytest.raises(MethodError, match="CLIPModel"):
        fold(torch.nn.Linear(2, 2), wrong)
    user_folder = tmp_path / "mine"
    user_folder.mkdir()
    (user_folder / "notes.txt").write_text("keep me")
    with pytest.raises(MethodError, match="not a checkpoint cf_hf folded"):
        save_folded(tmp_path, wrong, user_folder)
    assert (user_folder / "notes.txt").read_text() == "keep me"


def test_methods_fit_from_a_fairface_folder_and_a_saved_original(saved_original, fairface_gallery, tmp_path):
    from cf_hf.evaluation.embedding import EmbeddingConfig
    from cf_hf.methods import get_method

    original, gallery = saved_original, fairface_gallery
    embedding = EmbeddingConfig(cache_dir=str(tmp_path / "cache"), progress=False)
    clipped = get_method("clip_clip").fit(original, tmp_path / "out", gallery, "gender", keep=[8, 12],
                                   embedding_config=embedding)
    assert [checkpoint.name for checkpoint in clipped] == ["clip_clip-keep=8", "clip_clip-keep=12"]
    assert all(checkpoint.swept == "keep" and checkpoint.fit_seconds > 0 for checkpoint in clipped)
    config = json.loads((clipped[0].path / "config.json").read_text())
    assert config[METHOD_CONFIG_FIELD]["fitted_on"]["gallery"] == "fairface"
    assert config[METHOD_CONFIG_FIELD]["fitted_on"]["images"] == 40
    with pytest.raises(MethodError, match="no attribute 'religion'"):
        get_method("clip_clip").fit(original, tmp_path / "out", gallery, "religion", keep=[8])
    prompted = get_method("biased_prompts").fit(original, tmp_path / "out", "gender", ["nurse", "chef"],
                                         lambdas=[10, 1000], embedding_config=embedding)
    assert [checkpoint.name for checkpoint in prompted] == ["biased_prompts-lambda=10", "biased_prompts-lambda=1000"]
    config = json.loads((prompted[1].path / "config.json").read_text())
    assert config[METHOD_CONFIG_FIELD]["settings"] == {"attribute": "gender", "lambda": 1000.0}
    fitted_on = config[METHOD_CONFIG_FIELD]["fitted_on"]
    assert fitted_on["evaluated_concepts"] == ["nurse", "chef"]
    assert fitted_on["held_out_concepts"] == ["chef", "nurse"]  # in the shipped list, left out of the calibration
    assert not {"nurse", "chef"} & set(fitted_on["calibration_concepts"])


def test_compare_scores_every_method_in_one_results_file_table_and_frontier(saved_original, fairface_gallery,
                                                                            tmp_path):
    from testing_utils.evaluation import make_imagenet

    from cf_hf.evaluation import EvaluationConfig, FairnessConfig, load_imagenet_folder
    from cf_hf.evaluation.embedding import EmbeddingConfig
    from cf_hf.methods import get_method
    from cf_hf.methods.compare import compare

    original, gallery = saved_original, fairface_gallery
    zero_shot = load_imagenet_folder(make_imagenet(tmp_path / "imagenet"))
    embedding = EmbeddingConfig(cache_dir=None, progress=False)
    checkpoints = get_method("clip_clip").fit(original, tmp_path / "fits", gallery, "gender", keep=[6, 12],
                                       embedding_config=embedding)
    checkpoints += get_method("biased_prompts").fit(original, tmp_path / "fits", "gender", ["nurse", "chef"],
                                             embedding_config=embedding)
    config = EvaluationConfig(fairness=FairnessConfig(concepts=["nurse", "chef"], ks=[10]), embedding=embedding)
    results = compare(original, checkpoints, tmp_path / "compare", fairness=gallery, zero_shot=zero_shot,
                      config=config)

    from cf_hf.evaluation.results import load_results

    on_disk = json.loads((tmp_path / "compare" / "results.json").read_text())
    read = load_results(tmp_path / "compare" / "results.json")
    assert read.models["clip_clip-keep=6"].zero_shot_accuracy == results["models"]["clip_clip-keep=6"]["zero_shot_accuracy"]
    names = ["original", "clip_clip-keep=6", "clip_clip-keep=12", "biased_prompts-lambda=1000"]
    assert list(on_disk["models"]) == names == list(results["models"])
    assert on_disk["methods"]["clip_clip-keep=6"]["settings"] == {"attribute": "gender", "keep": 6,
                                                                  "estimator": "histogram"}
    assert on_disk["methods"]["original"]["method"] == "original"
    report = (tmp_path / "compare" / "report.md").read_text()
    table = [line for line in report.splitlines() if line.startswith("| clip_clip-keep=6 |")]
    assert table and "%" in table[0]
    assert "MaxSkew gender" in report and "ABLE gender" in report
    assert (tmp_path / "compare" / "plots" / "frontier.png").stat().st_size > 0
    # Biased prompts change only the text side: the image tower is the original's (embeddings reused).
    fingerprints = {name: entry["model"]["image_fingerprint"] for name, entry in results["models"].items()}
    assert fingerprints["biased_prompts-lambda=1000"] == fingerprints["original"] != fingerprints["clip_clip-keep=6"]


def test_cf_hf_compare_fits_the_methods_and_scores_them_beside_a_real_sweep(tiny_clip, tmp_path, capsys):
    from testing_utils.evaluation import make_fairface, make_imagenet

    from cf_hf.cli import main
    from cf_hf.interpolation import interpolate_sweep

    model, processor = tiny_clip
    original, finetuned = tmp_path / "original", tmp_path / "finetuned"
    model.save_pretrained(original)
    processor.save_pretrained(original)
    changed = type(model)(model.config)
    changed.load_state_dict(model.state_dict())
    with torch.no_grad():
        changed.visual_projection.weight.mul_(0.5).add_(0.1)
    changed.save_pretrained(finetuned)
    processor.save_pretrained(finetuned)
    interpolate_sweep(original, finetuned, [0.0, 1.0], tmp_path / "sweep")
    fairface = make_fairface(tmp_path / "fairface", n=40)
    common = ["--original", str(original), "--fairface", str(fairface), "--k", "10", "--concepts", "nurse", "chef",
              "--imagenet", str(make_imagenet(tmp_path / "imagenet")), "--no_progress", "--no_plots"]
    assert main(["compare", *common, "--sweep", str(tmp_path / "sweep"), "--methods", "clip_clip", "biased_prompts",
                 "--clip_clip_fairface", str(fairface), "--clip_clip_fairface_csv",
                 str(fairface / "fairface_label_val.csv"), "--clip_clip_keep", "8",
                 "--output_dir", str(tmp_path / "out")]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert list(results["models"]) == ["original", "alpha=0", "alpha=1", "clip_clip-keep=8", "biased_prompts-lambda=1000"]
    assert results["methods"]["alpha=1"]["query_ms"] > 0
    assert results["methods"]["alpha=1"] | {"path": None, "query_ms": None} == {
        "name": "alpha=1", "method": "counterfactual", "path": None, "settings": {"alpha": 1.0}, "swept": "alpha",
        "fit_seconds": 0.0, "query_ms": None}
    assert results["models"]["alpha=0"]["gender"] == results["models"]["original"]["gender"]
    assert (tmp_path / "out" / "methods" / "clip_clip-keep=8" / "config.json").is_file()
    assert (tmp_path / "out" / "report.md").read_text().startswith("# cf_hf method comparison")
    capsys.readouterr()

    assert main(["compare", *common, "--methods", "clip_clip", "--output_dir", str(tmp_path / "bad")]) == 2
    assert "needs --clip_clip_fairface" in capsys.readouterr().err
    assert main(["compare", *common, "--methods", "biased_prompts", "--attribute", "religion",
                 "--output_dir", str(tmp_path / "bad")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "no attribute 'religion'" in error[0]


def test_the_counterfactual_method_trains_and_writes_its_sweep_as_checkpoints(tiny_clip_dir, tmp_path):
    from testing_utils.training import make_counterfactual_dataset
    from transformers import CLIPModel

    from cf_hf.methods import get_method
    from cf_hf.methods.counterfactual.trainer import CounterfactualTrainingArguments

    arguments = CounterfactualTrainingArguments(
        output_dir=str(tmp_path / "unused"), per_device_train_batch_size=8, group_size=4, max_steps=2,
        save_strategy="no", logging_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True)
    checkpoints = get_method("counterfactual").fit(tiny_clip_dir, tmp_path / "cf", make_counterfactual_dataset(), arguments,
                                            alphas=[0.0, 1.0])
    assert [(checkpoint.name, checkpoint.settings, checkpoint.swept) for checkpoint in checkpoints] == [
        ("alpha=0", {"alpha": 0.0}, "alpha"), ("alpha=1", {"alpha": 1.0}, "alpha")]
    original = CLIPModel.from_pretrained(tiny_clip_dir).state_dict()
    at_zero = CLIPModel.from_pretrained(checkpoints[0].path).state_dict()
    at_one = CLIPModel.from_pretrained(checkpoints[1].path).state_dict()
    assert all(torch.equal(at_zero[name], original[name]) for name in at_zero)
    assert any(not torch.equal(at_one[name], original[name]) for name in at_one)
    assert checkpoints[1].fit_seconds > 0 and arguments.output_dir == str(tmp_path / "cf" / "finetuned")


# Reference computations, written here from the papers and a reading of the authors' code (not by calling cf_hf).

def _reference_gaussian_smooth(grid, sigma=1.0, truncate=4.0):
    """Separable Gaussian smoothing, zero outside the grid (the authors' `gaussian_filter(mode='constant')`)."""
    radius = int(truncate * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(grid, radius)
    rows = sum(weight * padded[radius + offset:radius + offset + grid.shape[0], :] for offset, weight in zip(offsets, kernel))
    return sum(weight * rows[:, radius + offset:radius + offset + grid.shape[1]] for offset, weight in zip(offsets, kernel))


def _reference_histogram_information(values, codes, bins=64):
    """Wang et al.'s MI: 64x64 joint histogram (equal-width bins from min to max on each axis), smoothed, + eps."""
    def bin_of(column):
        low, high = column.min(), column.max()
        index = np.floor((column - low) / (high - low) * bins).astype(int)
        return np.minimum(index, bins - 1)  # the maximum falls in the last bin

    joint = np.zeros((bins, bins))
    for row, column in zip(bin_of(values), bin_of(codes)):
        joint[row, column] += 1
    joint = _reference_gaussian_smooth(joint) + np.finfo(float).eps
    joint /= joint.sum()
    over_values, over_codes = joint.sum(1), joint.sum(0)
    return (joint * np.log(joint)).sum() - (over_values * np.log(over_values)).sum() - (over_codes * np.log(over_codes)).sum()


def _reference_kept_dimensions(features, labels, keep):
    codes = np.unique(labels, return_inverse=True)[1].astype(float)
    ranked = sorted((_reference_histogram_information(features[:, column], codes), column)
                    for column in range(features.shape[1]))
    return sorted(column for _, column in ranked[:keep])


def test_clip_clip_keeps_the_same_dimensions_as_a_reference_computation_of_the_authors_estimator():
    generator = np.random.default_rng(3)
    labels = np.array(["Black", "East_Asian", "White"])[generator.integers(0, 3, size=300)]
    codes = np.unique(labels, return_inverse=True)[1]
    # Unnormalized features of different scales, some carrying the attribute more or less strongly.
    features = generator.normal(size=(300, 16)) * generator.uniform(0.2, 5.0, size=16)
    for column, strength in ((2, 3.0), (5, 1.0), (11, 0.5), (14, 0.2)):
        features[:, column] += strength * codes
    for keep in (4, 8, 12, 15):
        (fit,) = clip_clip_maps(features, labels, keep=[keep], attribute="race")
        assert sorted(np.flatnonzero(np.diag(fit.image_map))) == _reference_kept_dimensions(features, labels, keep)
    assert fit.settings["estimator"] == "histogram" and "64x64" in fit.fitted_on["estimator"]
    recorded = np.array(fit.fitted_on["mutual_information"]["race"])
    reference = [_reference_histogram_information(features[:, column], codes.astype(float)) for column in range(16)]
    np.testing.assert_allclose(recorded, reference, atol=1e-6)


def test_clip_clip_ranks_the_unnormalized_image_features_as_the_authors(saved_original, fairface_gallery, tmp_path):
    from cf_hf.evaluation.embedding import EmbeddingConfig, EmbeddingEngine
    from cf_hf.methods import get_method

    embedding = EmbeddingConfig(cache_dir=None, progress=False)
    (checkpoint,) = get_method("clip_clip").fit(saved_original, tmp_path / "out", fairface_gallery, "gender", keep=[8],
                                                embedding_config=embedding)
    fitted_on = json.loads((checkpoint.path / "config.json").read_text())[METHOD_CONFIG_FIELD]["fitted_on"]
    assert fitted_on["image_features"] == "unnormalized"
    engine = EmbeddingEngine.from_pretrained(saved_original, embedding)
    raw = np.asarray(engine.embed_images(fairface_gallery.images, fairface_gallery.fingerprint, normalize=False),
                     dtype=np.float64)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    codes = np.unique(np.asarray(fairface_gallery.attributes["gender"], dtype=str), return_inverse=True)[1]
    reference = [_reference_histogram_information(raw[:, column], codes.astype(float)) for column in range(raw.shape[1])]
    np.testing.assert_allclose(fitted_on["mutual_information"]["gender"], reference, atol=1e-6)
    knn = get_method("clip_clip").fit(saved_original, tmp_path / "knn", fairface_gallery, "gender", keep=[8],
                                      embedding_config=embedding, estimator="knn")[0]
    assert knn.settings["estimator"] == "knn"
    with pytest.raises(MethodError, match="unknown CLIP-clip estimator 'ksg'"):
        get_method("clip_clip").fit(saved_original, tmp_path / "bad", fairface_gallery, "gender", keep=[8], estimator="ksg")


def test_biased_prompts_map_equals_a_reference_computation_of_the_authors_closed_form():
    from sklearn.decomposition import TruncatedSVD

    generator = np.random.default_rng(7)

    def unit(rows):
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    spurious, first, second = unit(generator.normal(size=(4, 16))), unit(generator.normal(size=(6, 16))), \
        unit(generator.normal(size=(6, 16)))
    queries = unit(generator.normal(size=(5, 16)))
    # Chuang et al.: P0 from the TruncatedSVD basis of the spurious prompts, M the mean of
    # (z_i z_iᵀ + z_j z_jᵀ − z_i z_jᵀ − z_j z_iᵀ) over the pairs, P = P0 (λM + I)⁻¹, queries P z renormalized.
    basis = TruncatedSVD(n_components=len(spurious), random_state=0).fit(spurious).components_.T
    projection = np.eye(16) - basis @ np.linalg.inv(basis.T @ basis) @ basis.T
    calibration = np.zeros((16, 16))
    for z_i, z_j in zip(first, second):
        z_i, z_j = z_i[:, None], z_j[:, None]
        calibration += z_i @ z_i.T + z_j @ z_j.T - z_i @ z_j.T - z_j @ z_i.T
    calibration /= len(first)
    from cf_hf.methods.biased_prompts.projection import BiasedPrompts

    table = {**{f"s{i}": row for i, row in enumerate(spurious)}, **{f"a{i}": row for i, row in enumerate(first)},
             **{f"b{i}": row for i, row in enumerate(second)}}
    prompts = BiasedPrompts("gender", tuple(f"s{i}" for i in range(4)), tuple((f"a{i}", f"b{i}") for i in range(6)))
    for lam in (1.0, 1000.0):
        expected = projection @ np.linalg.inv(lam * calibration + np.eye(16))
        np.testing.assert_allclose(biased_prompts_map(spurious, first, second, lam), expected, atol=1e-6)
        mapped = queries @ expected.T
        (fit,) = biased_prompts_maps(lambda texts: np.stack([table[text] for text in texts]), prompts, [lam])
        np.testing.assert_allclose(fit.apply(queries, "text"), mapped / np.linalg.norm(mapped, axis=1, keepdims=True),
                                   atol=1e-6)


def test_biased_prompts_calibrate_on_concepts_disjoint_from_the_evaluated_ones():
    prompts = load_biased_prompts("gender", ["Doctor", "nurse", "astronaut"])
    named = {pair for pair in prompts.pairs if "doctor" in pair[0].lower() or "nurse" in pair[0].lower()}
    assert not named
    assert prompts.held_out_concepts == ("doctor", "nurse")  # in the authors' training list; astronaut is not
    assert len(prompts.calibration_concepts) == 78
    assert ("A photo of a female chef.", "A photo of a male chef.") in prompts.pairs
    with pytest.raises(MethodError, match="every calibration concept .* is also evaluated"):
        load_biased_prompts("gender", ["nurse"], calibration_concepts=["Nurse"])


def test_biased_prompts_articles_agree_with_the_value():
    race = load_biased_prompts("race", calibration_concepts=["accountant"])
    assert "A photo of an East Asian." in race.spurious
    assert "A photo of an Indian person." in race.spurious
    assert "A photo of a White." in race.spurious
    assert ("A photo of a White accountant.", "A photo of a Black accountant.") in race.pairs
    assert ("A photo of a young accountant.", "A photo of an elderly accountant.") in \
        load_biased_prompts("age", calibration_concepts=["accountant"]).pairs
    assert not any(" a East" in prompt or " a Indian" in prompt for prompt in race.spurious + sum(race.pairs, ()))
