"""BendVLM: step 2's closed form against the paper's optimization, the two steps rebuilt independently,
a planted attribute direction removed, checkpoints that round-trip through `AutoModel` in a fresh process
and score in the harness as the method applied to embeddings, bad input."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from cf_hf.methods import MethodError, fold
from cf_hf.methods.bendvlm.debias import bendvlm_debias, equalize_group_similarity
from cf_hf.methods.bendvlm.fit import BendVLMFit, fit_bendvlm, reference_labels
from cf_hf.methods.bendvlm.modeling import BendVLMCLIPModel
from cf_hf.utils.tiny_clip import build_tiny_clip

WORDS = "a photo of the male female nurse doctor chef person who is picture close-up face".split()


def _unit(array):
    return array / np.linalg.norm(array, axis=-1, keepdims=True)


@pytest.mark.parametrize("values,seed", [(2, 0), (3, 1), (4, 2), (2, 3)])
def test_step_two_in_closed_form_equals_the_papers_constrained_optimization(values, seed):
    generator = np.random.default_rng(seed)
    dimension = 12
    query = _unit(generator.normal(size=dimension))
    means = generator.normal(size=(values, dimension)) * 0.3 + generator.normal(size=dimension)

    constraints = [{"type": "eq", "fun": lambda x: x @ x - 1.0}]
    constraints += [{"type": "eq", "fun": lambda x, g=g: x @ means[g] - x @ means[0]} for g in range(1, values)]
    solution = minimize(lambda x: -(x @ query), query, method="SLSQP", constraints=constraints,
                        options={"ftol": 1e-14, "maxiter": 1000})
    assert solution.success
    closed = equalize_group_similarity(torch.tensor(query)[None], torch.tensor(means)[None])[0].numpy()
    np.testing.assert_allclose(closed, solution.x, atol=1e-6)
    similarities = means @ closed
    np.testing.assert_allclose(similarities, similarities[0], atol=1e-12)


def _reference_bendvlm(query, augmented, prompts, reference, labels, neighbors):
    """Both steps for one query, written out with numpy: a least-squares projection for step 1 and the
    Lagrangian solution of step 2."""
    values = augmented.shape[0]
    query, augmented, prompts, reference = _unit(query), _unit(augmented), _unit(prompts), _unit(reference)
    per_value = augmented.mean(axis=1)
    directions = np.concatenate([per_value - per_value.mean(axis=0), prompts - prompts.mean(axis=0)])
    coefficients, *_ = np.linalg.lstsq(directions.T, query, rcond=None)
    projected = _unit(query - directions.T @ coefficients)
    means = []
    for value in range(values):
        members = reference[labels == value]
        order = np.argsort(-(members @ projected), kind="stable")[:neighbors]
        means.append(members[order].mean(axis=0))
    differences = np.stack(means[1:]) - means[0]
    multipliers = np.linalg.lstsq(differences @ differences.T, differences @ projected, rcond=None)[0]
    return _unit(projected - differences.T @ multipliers)


def test_both_steps_equal_an_independent_numpy_implementation():
    generator = np.random.default_rng(4)
    m, values, templates, dimension, n = 5, 3, 2, 10, 60
    queries = generator.normal(size=(m, dimension))
    augmented = generator.normal(size=(m, values, templates, dimension))
    prompts = generator.normal(size=(values, dimension))
    reference = generator.normal(size=(n, dimension))
    labels = generator.integers(values, size=n)
    result = bendvlm_debias(*(torch.tensor(array) for array in (queries, augmented, prompts, reference, labels)),
                            neighbors=7).numpy()
    expected = np.stack([_reference_bendvlm(queries[i], augmented[i], prompts, reference, labels, 7) for i in range(m)])
    np.testing.assert_allclose(result, expected, atol=1e-10)


def test_a_planted_attribute_direction_is_removed_maxskew_falls_on_a_synthetic_gallery():
    from cf_hf.metrics.fairness import max_skew

    generator = np.random.default_rng(0)
    dimension, n = 24, 600
    direction = _unit(generator.normal(size=dimension))
    gender = generator.integers(2, size=n)
    content = generator.normal(size=(n, dimension))
    content -= np.outer(content @ direction, direction)
    images = _unit(content + 2.0 * (2 * gender - 1)[:, None] * direction)
    queries = generator.normal(size=(10, dimension))
    queries -= np.outer(queries @ direction, direction)
    queries = _unit(queries) + 0.8 * direction  # every query leans to one gender
    # Augmented queries and attribute prompts differ along the direction (value 0 = gender 0 = −direction).
    signs = np.array([-1.0, 1.0])
    augmented = queries[:, None, None, :] + signs[None, :, None, None] * direction
    prompts = signs[:, None] * direction + 0.1 * generator.normal(size=(2, dimension))

    def mean_max_skew(queries):
        return float(max_skew(_unit(queries) @ images.T, gender, k=100).mean())

    debiased = bendvlm_debias(*(torch.tensor(array) for array in (queries, augmented, prompts, images, gender)),
                              neighbors=50).numpy()
    before, after = mean_max_skew(queries), mean_max_skew(debiased)
    assert before > 0.5
    assert after < 0.2 * before


@pytest.fixture(scope="module")
def saved_original(tmp_path_factory):
    model, processor = build_tiny_clip(texts=[" ".join(WORDS)] * 4, seed=0)
    folder = tmp_path_factory.mktemp("original")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def reference_gallery(tmp_path_factory):
    from testing_utils.evaluation import make_fairface

    from cf_hf.evaluation import load_fairface

    return load_fairface(make_fairface(tmp_path_factory.mktemp("fairface"), n=40))


@pytest.fixture(scope="module")
def bendvlm_checkpoint(saved_original, reference_gallery, tmp_path_factory):
    (checkpoint,) = fit_bendvlm(saved_original, tmp_path_factory.mktemp("methods"), reference_gallery, "gender",
                                neighbors=[5])
    return checkpoint


def test_the_harness_scores_the_checkpoint_as_bendvlm_applied_to_the_original_embeddings(
        saved_original, reference_gallery, bendvlm_checkpoint):
    from cf_hf.evaluation.embedding import EmbeddingCache, EmbeddingEngine
    from cf_hf.methods.attribute_prompts import load_attribute_prompts

    assert bendvlm_checkpoint.name == "bendvlm-neighbors=5"
    cache = EmbeddingCache()
    plain = EmbeddingEngine.from_pretrained(saved_original, cache=cache)
    debiased = EmbeddingEngine.from_pretrained(bendvlm_checkpoint.path, cache=cache)
    assert isinstance(debiased.model, BendVLMCLIPModel)
    assert debiased.text_fingerprint != plain.text_fingerprint
    queries = ["a photo of a nurse", "a photo of a doctor", "the chef", "a close-up photo of a person"]
    _, values, labels = reference_labels(reference_gallery, "gender")
    prompts = load_attribute_prompts("gender", values=values)
    augmented = np.stack([[plain.embed_texts(prompts.augmented(query, value)) for value in values] for query in queries])
    prompt_embeddings = np.stack([plain.embed_texts(list(prompts.prototype_prompts[value])).mean(axis=0) for value in values])
    reference = plain.embed_images(reference_gallery.images, reference_gallery.fingerprint)
    expected = bendvlm_debias(*(torch.tensor(np.asarray(array, dtype=np.float64))
                                for array in (plain.embed_texts(queries), augmented, prompt_embeddings, reference)),
                              labels=torch.tensor(labels), neighbors=5).numpy()
    np.testing.assert_allclose(debiased.embed_texts(queries), expected, atol=1e-5)
    assert not np.allclose(debiased.embed_texts(queries), plain.embed_texts(queries), atol=1e-3)
    images = reference_gallery.images[:3]
    np.testing.assert_allclose(debiased.embed_images(images), plain.embed_images(images), atol=1e-6)


def test_the_checkpoint_shares_the_originals_image_cache_entry_its_image_tower_being_unchanged(
        saved_original, reference_gallery, bendvlm_checkpoint):
    from cf_hf.evaluation.embedding import EmbeddingCache, EmbeddingEngine

    cache = EmbeddingCache()
    plain = EmbeddingEngine.from_pretrained(saved_original, cache=cache)
    debiased = EmbeddingEngine.from_pretrained(bendvlm_checkpoint.path, cache=cache)
    assert debiased.image_fingerprint == plain.image_fingerprint
    assert debiased.text_fingerprint != plain.text_fingerprint
    expected = plain.embed_images(reference_gallery.images, reference_gallery.fingerprint)
    debiased._run_images = None  # a second forward pass would fail: the original's entry must serve
    np.testing.assert_array_equal(debiased.embed_images(reference_gallery.images, reference_gallery.fingerprint), expected)


def test_save_and_load_give_identical_embeddings_in_a_fresh_process_through_automodel(bendvlm_checkpoint, tmp_path):
    folder = bendvlm_checkpoint.path
    model = BendVLMCLIPModel.from_pretrained(folder).eval()
    ids = torch.tensor([[0, 5, 6, 7, 1, 1], [0, 8, 1, 1, 1, 1]]).clamp(max=model.config.text_config.vocab_size - 1)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]])
    with torch.no_grad():
        text = model.get_text_features(input_ids=ids, attention_mask=mask).pooler_output
    torch.save({"ids": ids, "mask": mask}, tmp_path / "inputs.pt")
    script = (
        "import sys, torch\n"
        "from transformers import AutoModel\n"
        "from cf_hf.methods import register_model_types\n"
        "register_model_types()\n"
        "inputs = torch.load(sys.argv[2])\n"
        "model = AutoModel.from_pretrained(sys.argv[1]).eval()\n"
        "with torch.no_grad():\n"
        "    text = model.get_text_features(input_ids=inputs['ids'], attention_mask=inputs['mask']).pooler_output\n"
        "torch.save({'class': type(model).__name__, 'text': text, 'size': model.config.reference_size}, sys.argv[3])\n"
    )
    subprocess.run([sys.executable, "-c", script, str(folder), str(tmp_path / "inputs.pt"), str(tmp_path / "out.pt")],
                   capture_output=True, text=True, check=True)
    loaded = torch.load(tmp_path / "out.pt")
    assert loaded["class"] == "BendVLMCLIPModel" and loaded["size"] == 40
    # Equal up to float rounding: the two processes may run torch with different thread counts.
    torch.testing.assert_close(loaded["text"], text, rtol=0, atol=1e-5)
    assert list(folder.glob("*.safetensors")) and not list(folder.glob("*.bin"))


def test_bad_input_is_refused_with_a_clear_error_and_nothing_is_written(saved_original, reference_gallery, tmp_path):
    from cf_hf.methods.linear import load_clip

    output = tmp_path / "methods"
    with pytest.raises(MethodError, match="reference set 'fairface' has no attribute column 'hair'.*'gender'"):
        fit_bendvlm(saved_original, output, reference_gallery, "hair")
    one_value = SimpleNamespace(name="one-gender", attributes={"gender": ["Female"] * 4}, images=[None] * 4)
    with pytest.raises(MethodError, match=r"'gender' of the reference set 'one-gender' has 1 value\(s\) \['Female'\]"):
        fit_bendvlm(saved_original, output, one_value, "gender")
    unknown = SimpleNamespace(name="martians", attributes={"gender": ["Female", "Martian"]}, images=[None] * 2)
    with pytest.raises(MethodError, match=r"no prompts for the value\(s\) \['Martian'\]"):
        fit_bendvlm(saved_original, output, unknown, "gender")
    with pytest.raises(MethodError, match="neighbors must be >= 1"):
        fit_bendvlm(saved_original, output, reference_gallery, "gender", neighbors=[0])
    assert not output.exists()
    model, _ = load_clip(saved_original)
    fit = BendVLMFit(prompts=None, reference_embeddings=np.zeros((2, 16)), reference_labels=np.zeros(2, dtype=int),
                     attribute_prompts=np.zeros((2, 16)), neighbors=5)
    with pytest.raises(MethodError, match="bendvlm is not a linear map.*cannot fold into a plain CLIPModel"):
        fold(model, fit)


def test_cf_hf_compare_fits_bendvlm_and_the_closed_form_projection_and_scores_them(saved_original, tmp_path, capsys):
    import json

    from testing_utils.evaluation import make_fairface

    from cf_hf.cli import main

    fairface = make_fairface(tmp_path / "fairface", n=40)
    common = ["--original", str(saved_original), "--fairface", str(fairface), "--k", "10", "--concepts", "nurse", "chef",
              "--no_progress", "--no_plots", "--clip_clip_fairface", str(fairface), "--clip_clip_fairface_csv",
              str(fairface / "fairface_label_val.csv")]
    assert main(["compare", *common, "--methods", "closed_form", "bendvlm", "--closed_form_weight", "1", "0.5",
                 "--bendvlm_neighbors", "4", "--output_dir", str(tmp_path / "out")]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert list(results["models"]) == ["original", "closed_form-weight=1", "closed_form-weight=0.5", "bendvlm-neighbors=4"]
    assert results["methods"]["bendvlm-neighbors=4"]["settings"] == {"attribute": "gender", "neighbors": 4}
    config = json.loads((tmp_path / "out" / "methods" / "bendvlm-neighbors=4" / "config.json").read_text())
    assert config["model_type"] == "clip_bendvlm" and config["cf_hf_method"]["fitted_on"]["reference_size"] == 40
    assert results["models"]["bendvlm-neighbors=4"]["gender"] != results["models"]["original"]["gender"]
    capsys.readouterr()
    assert main(["compare", *common, "--methods", "bendvlm", "--attribute", "gender", "race", "gender",
                 "--output_dir", str(tmp_path / "bad")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--attribute gender: given twice" in error[0]
    assert main(["compare", *common, "--methods", "closed_form", "--attribute", "gender", "hair",
                 "--output_dir", str(tmp_path / "bad")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "no attribute 'hair'" in error[0]


def test_push_model_plans_a_card_that_names_bendvlm_and_what_it_needs_at_query_time(bendvlm_checkpoint):
    from hub_scripts.push_model import plan_model_push

    (plan,) = plan_model_push(bendvlm_checkpoint.path, "org/clip-bendvlm", base_model="openai/clip-vit-base-patch32")
    card = plan.extra_files["README.md"].decode()
    assert "## The debiasing method" in card and "| neighbors | 5 |" in card
    assert "**At query time** it needs the stored reference embeddings and attribute prompts" in card
    assert "register_model_types()" in card and "model_type: clip_bendvlm" in card
    assert "What α means" not in card


def test_cf_hf_explore_answers_a_prompt_with_the_bendvlm_checkpoint_beside_the_original(
        saved_original, bendvlm_checkpoint, tmp_path, capsys):
    from testing_utils.evaluation import make_fairface

    from cf_hf.cli import main

    root = make_fairface(tmp_path / "fairface", n=16)
    argv = ["--model", f"original={saved_original}", "--model", f"bendvlm={bendvlm_checkpoint.path}",
            "--fairface", str(root), "--no_progress", "--check", "a photo of a doctor", "--k", "4",
            "--attribute", "gender"]
    assert main(["explore", *argv]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines if "MaxSkew@4" in line] == ["original", "bendvlm"]


@pytest.mark.parametrize("value_counts,seed", [((2, 3), 0), ((2, 2), 1), ((3, 2, 2), 2)])
def test_joint_step_two_in_closed_form_equals_the_constrained_optimization_with_every_attributes_constraints(
        value_counts, seed):
    generator = np.random.default_rng(seed)
    dimension = 12
    query = _unit(generator.normal(size=dimension))
    means = generator.normal(size=(sum(value_counts), dimension)) * 0.3 + generator.normal(size=dimension)
    constraints = [{"type": "eq", "fun": lambda x: x @ x - 1.0}]
    start = 0
    for count in value_counts:  # each attribute: its groups equally similar to the query
        constraints += [{"type": "eq", "fun": lambda x, g=start + g, first=start: x @ means[g] - x @ means[first]}
                        for g in range(1, count)]
        start += count
    solution = minimize(lambda x: -(x @ query), query, method="SLSQP", constraints=constraints,
                        options={"ftol": 1e-14, "maxiter": 1000})
    assert solution.success
    closed = equalize_group_similarity(torch.tensor(query)[None], torch.tensor(means)[None], list(value_counts))[0]
    np.testing.assert_allclose(closed.numpy(), solution.x, atol=1e-6)


def _reference_joint_bendvlm(query, augmented, prompts, reference, labels, neighbors, value_counts):
    """Both steps for one query and several attributes, with numpy: step 1 projects out every attribute's
    centred augmentation and prompt directions (least squares); step 2 solves the Lagrangian with every
    attribute's rows μ_g − μ_first stacked."""
    query, augmented, prompts, reference = _unit(query), _unit(augmented), _unit(prompts), _unit(reference)
    per_value = augmented.mean(axis=1)
    directions, start = [], 0
    for count in value_counts:
        block, prompt_block = per_value[start:start + count], prompts[start:start + count]
        directions += [block - block.mean(axis=0), prompt_block - prompt_block.mean(axis=0)]
        start += count
    directions = np.concatenate(directions)
    coefficients, *_ = np.linalg.lstsq(directions.T, query, rcond=None)
    projected = _unit(query - directions.T @ coefficients)
    rows = []
    for attribute, count in enumerate(value_counts):
        means = []
        for value in range(count):
            members = reference[labels[:, attribute] == value]
            order = np.argsort(-(members @ projected), kind="stable")[:neighbors]
            means.append(members[order].mean(axis=0))
        rows += [mean - means[0] for mean in means[1:]]
    differences = np.stack(rows)
    multipliers = np.linalg.lstsq(differences @ differences.T, differences @ projected, rcond=None)[0]
    return _unit(projected - differences.T @ multipliers)


def test_the_joint_steps_equal_an_independent_numpy_implementation():
    generator = np.random.default_rng(6)
    m, value_counts, templates, dimension, n = 4, [2, 3], 2, 14, 90
    queries = generator.normal(size=(m, dimension))
    augmented = generator.normal(size=(m, sum(value_counts), templates, dimension))
    prompts = generator.normal(size=(sum(value_counts), dimension))
    reference = generator.normal(size=(n, dimension))
    labels = np.stack([generator.integers(count, size=n) for count in value_counts], axis=1)
    result = bendvlm_debias(*(torch.tensor(array) for array in (queries, augmented, prompts, reference, labels)),
                            neighbors=6, value_counts=value_counts).numpy()
    expected = np.stack([_reference_joint_bendvlm(queries[i], augmented[i], prompts, reference, labels, 6, value_counts)
                         for i in range(m)])
    np.testing.assert_allclose(result, expected, atol=1e-10)


def test_one_attribute_through_the_joint_path_is_bit_identical_to_the_single_attribute_path():
    generator = np.random.default_rng(7)
    queries, augmented = generator.normal(size=(3, 10)), generator.normal(size=(3, 3, 2, 10))
    prompts, reference, labels = generator.normal(size=(3, 10)), generator.normal(size=(50, 10)), generator.integers(3, size=50)
    tensors = [torch.tensor(array) for array in (queries, augmented, prompts, reference)]
    single = bendvlm_debias(*tensors, torch.tensor(labels), neighbors=5)
    joint = bendvlm_debias(*tensors, torch.tensor(labels[:, None]), neighbors=5, value_counts=[3])
    assert torch.equal(single, joint)


def test_two_planted_attribute_directions_are_both_removed_maxskew_falls_for_each():
    from cf_hf.metrics.fairness import max_skew

    generator = np.random.default_rng(0)
    dimension, n = 24, 800
    planted, _ = np.linalg.qr(generator.normal(size=(dimension, 2)))
    directions = planted.T
    labels = np.stack([generator.integers(2, size=n), generator.integers(2, size=n)], axis=1)
    content = generator.normal(size=(n, dimension))
    content -= content @ directions.T @ directions
    images = _unit(content + 2.0 * (2 * labels - 1) @ directions)
    queries = generator.normal(size=(10, dimension))
    queries -= queries @ directions.T @ directions
    queries = _unit(queries) + 0.8 * directions.sum(axis=0)  # every query leans to one value of both
    signs = np.array([-1.0, 1.0])
    value_directions = np.concatenate([signs[:, None] * directions[0], signs[:, None] * directions[1]])  # (4, d)
    augmented = queries[:, None, None, :] + value_directions[None, :, None, :]
    prompts = value_directions + 0.1 * generator.normal(size=(4, dimension))
    debiased = bendvlm_debias(*(torch.tensor(array) for array in (queries, augmented, prompts, images, labels)),
                              neighbors=50, value_counts=[2, 2]).numpy()
    def mean_max_skew(rows, attribute):
        return float(max_skew(_unit(rows) @ images.T, labels[:, attribute], k=100).mean())

    for attribute in range(2):
        before, after = mean_max_skew(queries, attribute), mean_max_skew(debiased, attribute)
        assert before > 0.5 and after < 0.2 * before, attribute


def test_a_joint_checkpoint_records_its_attributes_and_scores_as_the_joint_method(saved_original, reference_gallery,
                                                                                  tmp_path):
    from cf_hf.evaluation.embedding import EmbeddingEngine

    (checkpoint,) = fit_bendvlm(saved_original, tmp_path / "methods", reference_gallery, ["gender", "race"],
                                neighbors=[5])
    assert checkpoint.settings == {"attributes": ["gender", "race"], "neighbors": 5}
    model = BendVLMCLIPModel.from_pretrained(checkpoint.path)
    assert model.config.attributes == ["gender", "race"] and model.bendvlm.reference_labels.shape == (40, 2)
    assert model.config.value_counts == [len(set(reference_gallery.attributes[name])) for name in ("gender", "race")]
    texts = ["a photo of a nurse", "a photo of a doctor"]
    folded = EmbeddingEngine.from_pretrained(checkpoint.path).embed_texts(texts)
    assert folded.shape == (2, model.config.projection_dim) and np.allclose(np.linalg.norm(folded, axis=1), 1, atol=1e-3)
    with pytest.raises(MethodError, match="attribute 'age' is given twice"):
        fit_bendvlm(saved_original, tmp_path / "other", reference_gallery, ["age", "gender", "age"])
    with pytest.raises(MethodError, match="no attribute column 'hair'"):
        fit_bendvlm(saved_original, tmp_path / "other", reference_gallery, ["gender", "hair"])
    assert not (tmp_path / "other").exists()


def test_an_old_single_attribute_checkpoint_without_the_joint_fields_loads_and_embeds_the_same(bendvlm_checkpoint,
                                                                                             tmp_path):
    import json
    import shutil

    old = tmp_path / "old"
    shutil.copytree(bendvlm_checkpoint.path, old)
    config = json.loads((old / "config.json").read_text())
    del config["attributes"], config["value_counts"]  # what checkpoints saved before joint removal hold
    (old / "config.json").write_text(json.dumps(config))
    ids = torch.tensor([[0, 5, 6, 7, 1]]).clamp(max=config["text_config"]["vocab_size"] - 1)
    with torch.no_grad():
        texts = [BendVLMCLIPModel.from_pretrained(folder).eval().get_text_features(input_ids=ids).pooler_output
                 for folder in (old, bendvlm_checkpoint.path)]
    assert BendVLMCLIPModel.from_pretrained(old).config.attributes == ["gender"]
    assert torch.equal(texts[0], texts[1])
