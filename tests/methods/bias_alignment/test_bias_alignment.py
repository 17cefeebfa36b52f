"""The bias-alignment module: losses worked out by hand, a planted attribute direction removed by
training, checkpoints that round-trip and load in the harness, data from the real producers, bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from cf_hf.methods.bias_alignment.captions import caption_rows, caption_setting
from cf_hf.methods.bias_alignment.losses import (
    bias_alignment_loss,
    bias_embeddings,
    combined_loss,
    counterfactual_debiasing_loss,
)
from cf_hf.methods.bias_alignment.modeling import BiasAlignedCLIPModel
from cf_hf.methods.bias_alignment.rows import (
    BiasAlignmentData,
    counterfactual_data,
    gallery_data,
    group_partners,
)
from cf_hf.methods.bias_alignment.trainer import BiasAlignmentArguments, train_bias_alignment
from cf_hf.methods.linear import MethodError
from cf_hf.utils.tiny_clip import build_tiny_clip

WORDS = "this is the photo of a male female nurse doctor chef aged 20-29 30-39 white black indian".split()


@pytest.fixture(scope="module")
def saved_original(tmp_path_factory):
    model, processor = build_tiny_clip(texts=[" ".join(WORDS)] * 4, seed=0)
    folder = tmp_path_factory.mktemp("original")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def fairface_gallery(tmp_path_factory):
    from testing_utils.evaluation import make_fairface

    from cf_hf.evaluation import load_fairface

    return load_fairface(make_fairface(tmp_path_factory.mktemp("fairface"), n=32))


def _arguments(tmp_path, **overrides) -> BiasAlignmentArguments:
    values = dict(output_dir=str(tmp_path / "ba"), per_device_train_batch_size=16, queue_size=64, max_steps=4,
                  learning_rate=1e-3, use_cpu=True, save_strategy="no", disable_tqdm=True, seed=0,
                  eval_strategy="no", early_stopping_patience=0)
    values.update(overrides)
    return BiasAlignmentArguments(**values)


def _trained(saved_original, tmp_path) -> BiasAlignedCLIPModel:
    """A bias-aligned tiny CLIP whose heads are not the identity (random, seeded)."""
    from transformers import CLIPModel

    model = BiasAlignedCLIPModel.from_clip(CLIPModel.from_pretrained(saved_original))
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in model.bias_alignment.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return model.eval()


# -- losses ------------------------------------------------------------------------------------


def test_bias_alignment_loss_equals_the_kl_worked_out_by_hand():
    keys = torch.eye(2)
    loss = bias_alignment_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), keys, keys, 1.0)
    # p_v = softmax(1, 0) = (a, b), p_t = softmax(0, 1) = (b, a): KL(p_t ‖ p_v) = b log(b/a) + a log(a/b) = a − b
    # (symmetric here; the direction is pinned by tests/methods/bias_alignment/test_reference.py).
    a, b = math.e / (1 + math.e), 1 / (1 + math.e)
    assert loss.item() == pytest.approx(a - b, rel=1e-6)


def test_bias_alignment_loss_is_zero_when_both_biases_score_the_queues_alike():
    keys = torch.nn.functional.normalize(torch.randn(5, 3), dim=-1)
    bias = torch.randn(4, 3)
    assert bias_alignment_loss(bias, bias, keys, keys, 0.07).item() == pytest.approx(0.0, abs=1e-6)


def test_counterfactual_debiasing_loss_equals_the_cross_entropy_worked_out_by_hand():
    keys = torch.eye(2)
    loss = counterfactual_debiasing_loss(
        debiased_image=torch.tensor([[0.0, 1.0]]), debiased_text=torch.tensor([[1.0, 0.0]]),
        original_image=torch.tensor([[1.0, 0.0]]), original_text=torch.tensor([[0.0, 1.0]]),
        image_keys=keys, text_keys=keys, temperature=1.0)
    # Both directions: target (a, b) against prediction (b, a): −(a log b + b log a) = log(1 + e) − b.
    assert loss.item() == pytest.approx(math.log(1 + math.e) - 1 / (1 + math.e), rel=1e-6)


def test_counterfactual_debiasing_loss_uses_given_targets():
    keys = torch.eye(2)
    targets = torch.tensor([[1.0, 0.0]])
    loss = counterfactual_debiasing_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]]), keys[:1], keys[:1],
                                         keys, keys, 1.0, image_targets=targets, text_targets=targets)
    assert loss.item() == pytest.approx(math.log(1 + math.e) - 1, rel=1e-6)  # −log a


def test_combined_loss_weights_l_cd_by_alpha_and_bias_embeddings_are_original_minus_debiased():
    assert combined_loss(torch.tensor(2.0), torch.tensor(4.0), 0.25).item() == pytest.approx(3.5)
    bias = bias_embeddings(torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 3.0]]))
    assert bias.tolist() == [[1.0, -1.0]]


# -- training removes a planted attribute ------------------------------------------------------


def test_training_removes_a_planted_attribute_direction_maxskew_falls(saved_original, tmp_path):
    from cf_hf.metrics.fairness import max_skew

    rng = np.random.default_rng(0)
    dimension, rows = 16, 256
    direction = rng.normal(size=dimension)
    direction /= np.linalg.norm(direction)
    gender = rng.integers(2, size=rows)
    sign = (2 * gender - 1)[:, None]
    content = rng.normal(size=(rows, dimension))
    content -= np.outer(content @ direction, direction)
    image = content + 1.5 * sign * direction
    data = BiasAlignmentData(image, content + 1.5 * sign * direction, content - 1.5 * sign * direction)
    queries = rng.normal(size=(8, dimension))
    queries -= np.outer(queries @ direction, direction)
    queries += direction  # every query leans towards one gender

    def mean_max_skew(images, texts):
        images = images / np.linalg.norm(images, axis=1, keepdims=True)
        texts = texts / np.linalg.norm(texts, axis=1, keepdims=True)
        return float(max_skew(texts @ images.T, gender, k=64).mean())

    before = mean_max_skew(image, queries)
    # An empty-start queue: 256 random unit vectors (the authors' start) would outnumber these 256 rows in
    # 16 dimensions and the heads learn nothing in 24 steps (measured: MaxSkew unchanged).
    args = _arguments(tmp_path, per_device_train_batch_size=64, queue_size=256, max_steps=-1, num_train_epochs=6,
                      learning_rate=3e-2, queue_start="empty")
    model = BiasAlignedCLIPModel.from_pretrained(train_bias_alignment(saved_original, data, args))
    with torch.no_grad():
        debiased_images = model.bias_alignment.debias_image(torch.tensor(image, dtype=torch.float32)).numpy()
        debiased_queries = model.bias_alignment.debias_text(torch.tensor(queries, dtype=torch.float32)).numpy()
    after = mean_max_skew(debiased_images, debiased_queries)
    assert before > 0.4
    assert after < 0.6 * before


# -- checkpoints --------------------------------------------------------------------------------


def test_save_and_load_give_identical_embeddings_in_a_fresh_process_and_plain_clip_loads_the_original_part(
        saved_original, tmp_path):
    trained = _trained(saved_original, tmp_path)
    folder = tmp_path / "checkpoint"
    trained.save_pretrained(folder)
    model = BiasAlignedCLIPModel.from_pretrained(folder).eval()  # the attention implementation a load picks
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ids = torch.tensor([[0, 5, 6, 7, 1]]).clamp(max=model.config.text_config.vocab_size - 1)
    with torch.no_grad():
        image = model.get_image_features(pixel_values=pixels).pooler_output
        text = model.get_text_features(input_ids=ids).pooler_output
        original = model.original_image_features(pixels)
        np.testing.assert_allclose(trained.get_text_features(input_ids=ids).pooler_output, text, atol=1e-5)
    torch.save({"pixels": pixels, "ids": ids}, tmp_path / "inputs.pt")
    script = (
        "import sys, torch\n"
        "from transformers import AutoModel, CLIPModel\n"
        "inputs = torch.load(sys.argv[2])\n"
        "plain = CLIPModel.from_pretrained(sys.argv[1]).eval()  # before cf_hf is imported\n"
        "import cf_hf.methods.bias_alignment\n"
        "model = AutoModel.from_pretrained(sys.argv[1]).eval()\n"
        "with torch.no_grad():\n"
        "    image = model.get_image_features(pixel_values=inputs['pixels']).pooler_output\n"
        "    text = model.get_text_features(input_ids=inputs['ids']).pooler_output\n"
        "    plain_image = plain.get_image_features(pixel_values=inputs['pixels']).pooler_output\n"
        "torch.save({'class': type(model).__name__, 'plain_class': type(plain).__name__, 'image': image, 'text': text,\n"
        "            'plain_image': plain_image}, sys.argv[3])\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(folder), str(tmp_path / "inputs.pt"),
                           str(tmp_path / "out.pt")], capture_output=True, text=True, check=True)
    loaded = torch.load(tmp_path / "out.pt")
    assert loaded["class"] == "BiasAlignedCLIPModel"
    assert torch.equal(loaded["image"], image)
    assert torch.equal(loaded["text"], text)
    assert loaded["plain_class"] == "CLIPModel"
    assert torch.equal(loaded["plain_image"], original)
    assert not torch.allclose(original, image)
    assert "bias_alignment" in done.stderr and "UNEXPECTED" in done.stderr
    assert list(folder.glob("*.safetensors")) and not list(folder.glob("*.bin"))


def test_the_harness_loads_a_bias_aligned_checkpoint_and_embeds_with_the_heads(saved_original, tmp_path):
    from transformers import AutoProcessor

    from cf_hf.evaluation.embedding import EmbeddingCache, EmbeddingEngine

    model = _trained(saved_original, tmp_path)
    folder = tmp_path / "checkpoint"
    model.save_pretrained(folder)
    AutoProcessor.from_pretrained(saved_original).save_pretrained(folder)
    cache = EmbeddingCache()
    aligned = EmbeddingEngine.from_pretrained(folder, cache=cache)
    plain = EmbeddingEngine.from_pretrained(saved_original, cache=cache)
    assert isinstance(aligned.model, BiasAlignedCLIPModel)
    assert aligned.image_fingerprint != plain.image_fingerprint
    images = [np.full((32, 32, 3), value, dtype=np.uint8) for value in (10, 120, 250)]
    pixels = plain.processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = torch.nn.functional.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
    np.testing.assert_allclose(aligned.embed_images(images), expected.numpy(), atol=1e-5)
    assert not np.allclose(plain.embed_images(images), aligned.embed_images(images), atol=1e-3)
    raw = aligned.embed_images(images, normalize=False)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), expected.numpy(), atol=1e-5)


# -- data ---------------------------------------------------------------------------------------


def test_captions_name_the_labels_and_counterfactuals_swap_only_the_chosen_attribute():
    labels = {"gender": ["Male", "Female", "Male"], "race": ["White", "Black", "Indian"], "age": ["20-29"] * 3}
    rows = caption_rows(labels, caption_setting(["gender"]))
    assert rows.captions[0] == "This is the photo of a White male aged 20-29."
    assert [[rows.counterfactual_captions[i] for i in choices] for choices in rows.counterfactual_choices] == [
        ["This is the photo of a White female aged 20-29."], ["This is the photo of a Black male aged 20-29."],
        ["This is the photo of a Indian female aged 20-29."]]
    swapped = caption_rows(labels, caption_setting(["race"], "a {race} person", words={"race": {"Black": "dark"}}))
    assert all(f"a {before} person" not in [swapped.counterfactual_captions[i] for i in choices]
               for before, choices in zip(["White", "dark", "Indian"], swapped.counterfactual_choices))


def test_gallery_rows_from_a_fairface_folder_embed_the_captions_with_the_original_clip(saved_original, fairface_gallery):
    from cf_hf.evaluation.embedding import EmbeddingEngine

    engine = EmbeddingEngine.from_pretrained(saved_original)
    data = gallery_data(engine, fairface_gallery, caption_setting(["gender"]))
    assert len(data) == len(fairface_gallery.images) and data.image_counterfactual_rows == 0
    rows = caption_rows(fairface_gallery.attributes, caption_setting(["gender"]))
    np.testing.assert_allclose(data.counterfactual_text, engine.embed_texts(rows.counterfactual_captions, normalize=False),
                               atol=1e-6)
    shown = data.__getitems__(list(range(len(data))))["counterfactual_text_features"].numpy()
    expected = [rows.counterfactual_choices[row][0] for row in range(len(data))]  # gender: one counterfactual per row
    np.testing.assert_allclose(shown, data.counterfactual_text[expected])
    assert not np.allclose(data.text, shown)


def test_group_partners_are_the_other_members_of_each_group():
    partners = group_partners(["a", "b", "a", "a", "c"])
    assert [sorted(p.tolist()) for p in partners] == [[2, 3], [], [0, 3], [0, 2], []]


def test_image_counterfactuals_from_a_real_export_train_and_swap_images_within_groups(
        saved_original, world_counterfactual_dataset, tmp_path):
    import datasets

    from cf_hf.evaluation.embedding import EmbeddingEngine

    engine = EmbeddingEngine.from_pretrained(saved_original)
    data = counterfactual_data(engine, str(world_counterfactual_dataset))
    exported = datasets.load_dataset(str(world_counterfactual_dataset), split="train")
    assert len(data) == len(exported) and data.image_counterfactual_rows == len(exported)
    groups = list(exported["group_id"])
    assert all(groups[partner] == groups[row] for row in range(len(data)) for partner in data.partners[row])
    row = data[0]
    assert any(np.allclose(row["counterfactual_image_features"].numpy(), data.image[partner])
               for partner in data.partners[0])
    batch = data.__getitems__([0, 1, 2])  # the DataLoader's batched fetch
    assert batch["has_image_counterfactual"].all()
    for position, row in enumerate([0, 1, 2]):
        assert any(np.allclose(batch["counterfactual_image_features"][position].numpy(), data.image[partner])
                   for partner in data.partners[row])
    path = train_bias_alignment(saved_original, data, _arguments(tmp_path, max_steps=2))
    assert isinstance(BiasAlignedCLIPModel.from_pretrained(path), BiasAlignedCLIPModel)


# -- bad input ----------------------------------------------------------------------------------


def test_bad_input_is_refused_with_a_clear_error(tmp_path):
    labels = {"gender": ["Male", "Female"], "race": ["White", "Black"]}
    with pytest.raises(MethodError, match="no attribute 'age'"):
        caption_rows(labels, caption_setting(["age"], "a {age} person"))
    with pytest.raises(MethodError, match="does not mention 'gender'"):
        caption_rows(labels, caption_setting(["gender"], "a photo of a {race} person"))
    with pytest.raises(MethodError, match="no 'gender' label"):
        caption_rows({"gender": ["Male", None]}, caption_setting(["gender"], "a {gender}"))
    with pytest.raises(MethodError, match="single word"):
        caption_rows({"gender": ["Male", "Male"]}, caption_setting(["gender"], "a {gender}"))
    with pytest.raises(MethodError, match="queue_size=8 is smaller than a batch"):
        _arguments(tmp_path, queue_size=8)
    with pytest.raises(MethodError, match=r"alpha=1.5 is outside \[0, 1\]"):
        _arguments(tmp_path, alpha=1.5)
    with pytest.raises(MethodError, match="must be \\(n, d\\) alike"):
        BiasAlignmentData(np.zeros((3, 4)), np.zeros((3, 4)), np.zeros((2, 4)))


# -- command line and comparison ----------------------------------------------------------------


def test_train_ba_command_trains_resumes_and_reports_bad_options(saved_original, tmp_path, capsys):
    from testing_utils.evaluation import make_fairface

    from cf_hf.cli import main

    fairface = make_fairface(tmp_path / "fairface", n=32)
    output = tmp_path / "out"
    common = ["train-ba", "--fairface", str(fairface), "--fairface_csv", str(fairface / "fairface_label_val.csv"),
              "--model_name_or_path", str(saved_original), "--output_dir", str(output), "--no_progress",
              "--per_device_train_batch_size", "8", "--queue_size", "16", "--use_cpu", "--save_strategy", "steps",
              "--save_steps", "1", "--learning_rate", "1e-3", "--eval_strategy", "no", "--early_stopping_patience", "0",
              "--load_best_model_at_end", "false"]
    assert main(common + ["--max_steps", "2"]) == 0
    assert (output / "checkpoint-2").is_dir() and (output / "embeddings").is_dir()
    assert main(common + ["--max_steps", "3", "--resume_from_checkpoint", "last"]) == 0
    state = json.loads((output / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    config = json.loads((output / "config.json").read_text())
    assert config["model_type"] == "clip_bias_aligned"
    assert config["bias_alignment"]["attributes"] == ["gender"] and config["bias_alignment"]["losses"]["alpha"] == 0.3
    captions = config["bias_alignment"]["captions"]  # the authors' gender captions by default
    assert captions["setting"] == "gender" and captions["caption"] == "This is the photo of a {race} {gender} aged {age}."
    capsys.readouterr()
    assert main(common + ["--alpha", "2"]) == 2
    assert "alpha=2.0 is outside [0, 1]" in capsys.readouterr().err
    assert main(common + ["--attribute", "gender", "--caption_template", "a {race} person"]) == 2
    assert "does not mention 'gender'" in capsys.readouterr().err
    assert main(common + ["--attribute", "gender", "race"]) == 2
    assert "no caption setting of the authors removes gender race" in capsys.readouterr().err
    race_output = tmp_path / "race"
    assert main(common + ["--attribute", "race", "--max_steps", "1", "--output_dir", str(race_output)]) == 0
    race = json.loads((race_output / "config.json").read_text())["bias_alignment"]["captions"]
    assert race["setting"] == "race" and "never names East Asian" in race["difference_from_authors"]


def test_compare_scores_bias_alignment_checkpoints_beside_the_original(saved_original, fairface_gallery, tmp_path):
    from cf_hf.evaluation import EvaluationConfig, FairnessConfig
    from cf_hf.evaluation.embedding import EmbeddingConfig
    from cf_hf.methods import get_method
    from cf_hf.methods.compare import compare

    checkpoints = get_method("bias_alignment").fit(
        saved_original, tmp_path / "methods", fairface_gallery, "gender",
        training_arguments=_arguments(tmp_path, max_steps=2),
        variants=["bias_alignment", "bias_alignment_cd_only"], embedding_config=EmbeddingConfig(progress=False))
    assert [checkpoint.name for checkpoint in checkpoints] == ["bias_alignment-alpha=0.3", "bias_alignment_cd_only-alpha=1"]
    config = EvaluationConfig(fairness=FairnessConfig(concepts=["doctor", "nurse"], ks=[8], random_floor_queries=0),
                              embedding=EmbeddingConfig(progress=False))
    results = compare(saved_original, checkpoints, tmp_path / "compare", fairness=fairface_gallery, config=config,
                      plots=False)
    assert set(results["models"]) == {"original", "bias_alignment-alpha=0.3", "bias_alignment_cd_only-alpha=1"}
    assert results["methods"]["bias_alignment-alpha=0.3"]["settings"]["variant"] == "bias_alignment"
    assert "bias_alignment_cd_only-alpha=1" in (tmp_path / "compare" / "report.md").read_text()
    with pytest.raises(MethodError, match="needs the counterfactual dataset"):
        get_method("bias_alignment").fit(saved_original, tmp_path / "other", fairface_gallery, "gender",
                                  variants=["bias_alignment_image_cf"])


def test_train_ba_holds_out_rows_and_keeps_the_best_able_heads_every_two_epochs(saved_original, tmp_path, capsys):
    from testing_utils.evaluation import make_fairface, make_imagenet

    from cf_hf.cli import main

    fairface = make_fairface(tmp_path / "fairface", n=32)
    output = tmp_path / "out"
    common = ["train-ba", "--fairface", str(fairface), "--fairface_csv", str(fairface / "fairface_label_val.csv"),
              "--model_name_or_path", str(saved_original), "--output_dir", str(output), "--no_progress",
              "--per_device_train_batch_size", "8", "--queue_size", "16", "--use_cpu", "--learning_rate", "1e-3",
              "--report_to", "none"]
    assert main(common + ["--num_train_epochs", "4", "--validation_imagenet", str(make_imagenet(tmp_path / "imagenet"))]) == 0
    config = json.loads((output / "config.json").read_text())["bias_alignment"]
    assert config["validation"]["rows"] == 4 and config["labelled_rows"] == 28  # 12.5% of 32 held out
    assert config["best_step"] in (8, 16) and 0.0 < config["best_able"] <= 1.0  # 4 steps an epoch: epochs 2, 4
    state = json.loads(next(output.glob("checkpoint-*/trainer_state.json")).read_text())
    evaluated = [entry["epoch"] for entry in state["log_history"] if "eval_able" in entry]
    assert evaluated == [2.0] or evaluated == [2.0, 4.0]
    capsys.readouterr()
    common = [str(tmp_path / "elsewhere") if item == str(output) else item for item in common]  # a new folder
    assert main(common + ["--num_train_epochs", "2"]) == 2
    assert "--validation_imagenet DIR is needed" in capsys.readouterr().err
    assert main(common + ["--eval_strategy", "no"]) == 2
    assert "early_stopping_patience=10 counts evaluations" in capsys.readouterr().err
    assert main(common + ["--queue_size", "4"]) == 2
    assert "queue_size=4 is smaller than a batch" in capsys.readouterr().err
