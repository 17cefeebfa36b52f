"""The closed-form projection: its Chebyshev trade-off solved numerically, the formula rebuilt
independently, a planted attribute direction removed, folded checkpoints that load as plain CLIP in a
fresh process and score in the harness as the map applied to embeddings, bad input."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy.optimize import minimize

from cf_hf.methods.attribute_prompts import load_attribute_prompts
from cf_hf.methods.closed_form.fit import fit_closed_form
from cf_hf.methods.closed_form.projection import closed_form_maps, shrink_factor
from cf_hf.methods.linear import MethodError
from cf_hf.utils.tiny_clip import build_tiny_clip

WORDS = "a photo of the male female young middle-aged elderly person picture close-up face nurse doctor".split()
DIMENSION = 24


def _word_embedder(direction: np.ndarray, seed: int = 0):
    """A text "encoder" for prompts: each word has a fixed random vector orthogonal to `direction`;
    `female` adds +direction and `male` −direction (an attribute direction planted in the prompts)."""
    generator = np.random.default_rng(seed)
    vectors: dict[str, np.ndarray] = {}

    def embed(texts):
        rows = []
        for text in texts:
            total = np.zeros(DIMENSION)
            words = text.strip(".").split()
            for word in words:
                if word not in vectors:
                    vectors[word] = 0.3 * generator.normal(size=DIMENSION)
                total += vectors[word] if word not in ("female", "male") else 0.0
            total -= (total @ direction) * direction  # the attribute words alone carry the direction
            total += (2.0 * ("female" in words) - 2.0 * ("male" in words)) * direction
            rows.append(total / np.linalg.norm(total))
        return np.stack(rows)

    return embed


@pytest.mark.parametrize("weight", [0.2, 0.5, 0.8, 0.95])
def test_the_shrink_factor_solves_the_chebyshev_scalarization_and_is_pareto_optimal(weight):
    generator = np.random.default_rng(1)
    component = generator.normal(size=3)  # the in-subspace part a of an embedding

    def scalarized(y):
        return max(weight * y @ y, (1 - weight) * (y - component) @ (y - component))

    numeric = min((minimize(scalarized, start, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12,
                                                                              "maxiter": 20000})
                   for start in (np.zeros(3), component, generator.normal(size=3))), key=lambda result: result.fun)
    gamma = shrink_factor(weight)
    np.testing.assert_allclose(numeric.x, gamma * component, atol=1e-4)
    closed = gamma * component
    fairness, utility = closed @ closed, (closed - component) @ (closed - component)
    # Pareto optimality: no other point is at least as good on both objectives and better on one.
    others = generator.normal(size=(20000, 3)) * np.linalg.norm(component) + component * generator.uniform(size=(20000, 1))
    other_fairness = (others ** 2).sum(axis=1)
    other_utility = ((others - component) ** 2).sum(axis=1)
    assert not np.any((other_fairness <= fairness) & (other_utility <= utility)
                      & ((other_fairness < fairness - 1e-12) | (other_utility < utility - 1e-12)))
    # The bound on the utility loss: |z' - z| = (1 - γ)|P z|.
    assert math.isclose(math.sqrt(utility), (1 - gamma) * np.linalg.norm(component), rel_tol=1e-12)


def test_the_maps_equal_the_formula_rebuilt_with_a_qr_basis():
    direction = np.eye(DIMENSION)[0]
    embed = _word_embedder(direction)
    prompts = load_attribute_prompts("age")  # three values: a two-dimensional subspace
    fits = closed_form_maps(embed, prompts, weights=[1.0, 0.6])
    prototypes = np.stack([embed(list(prompts.prototype_prompts[value])).mean(axis=0) for value in prompts.values])
    differences = prototypes[1:] - prototypes[0]  # another spanning set of the same subspace
    basis, _ = np.linalg.qr(differences.T)
    for fit, weight in zip(fits, (1.0, 0.6)):
        gamma = math.sqrt(1 - weight) / (math.sqrt(weight) + math.sqrt(1 - weight))
        expected = np.eye(DIMENSION) - (1 - gamma) * basis @ basis.T
        np.testing.assert_allclose(fit.text_map, expected, atol=1e-10)
        np.testing.assert_allclose(fit.image_map, expected, atol=1e-10)
        assert fit.fitted_on["subspace_rank"] == 2
    assert [fit.name for fit in fits] == ["closed_form-weight=1", "closed_form-weight=0.6"]


def test_a_planted_attribute_direction_is_removed_maxskew_falls_on_a_synthetic_gallery():
    from cf_hf.metrics.fairness import max_skew

    generator = np.random.default_rng(0)
    direction = generator.normal(size=DIMENSION)
    direction /= np.linalg.norm(direction)
    (fit,) = closed_form_maps(_word_embedder(direction), load_attribute_prompts("gender"), weights=[1.0])
    gender = generator.integers(2, size=400)
    content = generator.normal(size=(400, DIMENSION))
    images = content + 3.0 * (2 * gender - 1)[:, None] * direction
    queries = generator.normal(size=(10, DIMENSION)) + 2.0 * direction  # every query leans to one gender

    def mean_max_skew(images, queries):
        images = images / np.linalg.norm(images, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        return float(max_skew(queries @ images.T, gender, k=100).mean())

    before = mean_max_skew(images, queries)
    after = mean_max_skew(fit.apply(images, "image"), fit.apply(queries, "text"))
    assert before > 0.5
    assert after < 0.3 * before


@pytest.fixture(scope="module")
def saved_original(tmp_path_factory):
    model, processor = build_tiny_clip(texts=[" ".join(WORDS)] * 4, seed=0)
    folder = tmp_path_factory.mktemp("original")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_fitted_checkpoints_load_as_plain_clip_in_a_fresh_process_and_score_as_the_map(saved_original, tmp_path):
    import torch

    from cf_hf.evaluation.embedding import EmbeddingCache, EmbeddingEngine

    checkpoints = fit_closed_form(saved_original, tmp_path / "methods", "gender", weights=[1.0, 0.5])
    assert [checkpoint.name for checkpoint in checkpoints] == ["closed_form-weight=1", "closed_form-weight=0.5"]
    cache = EmbeddingCache()
    plain = EmbeddingEngine.from_pretrained(saved_original, cache=cache)
    prompts = load_attribute_prompts("gender")
    (fit,) = closed_form_maps(plain.embed_texts, prompts, weights=[1.0])
    folded = EmbeddingEngine.from_pretrained(checkpoints[0].path, cache=cache)
    images = [np.full((32, 32, 3), value, dtype=np.uint8) for value in (10, 120, 250)]
    texts = ["a photo of a nurse", "a photo of a doctor"]
    np.testing.assert_allclose(folded.embed_images(images), fit.apply(plain.embed_images(images), "image"), atol=1e-5)
    np.testing.assert_allclose(folded.embed_texts(texts), fit.apply(plain.embed_texts(texts), "text"), atol=1e-5)
    script = (
        "import sys, torch\n"
        "from transformers import CLIPModel\n"
        "model = CLIPModel.from_pretrained(sys.argv[1]).eval()\n"
        "with torch.no_grad():\n"
        "    text = model.get_text_features(input_ids=torch.tensor([[0, 5, 6, 1]])).pooler_output\n"
        "torch.save({'class': type(model).__name__, 'text': text,\n"
        "            'cf_hf': 'cf_hf' in sys.modules}, sys.argv[2])\n"
    )
    subprocess.run([sys.executable, "-c", script, str(checkpoints[0].path), str(tmp_path / "out.pt")], check=True,
                   capture_output=True)
    loaded = torch.load(tmp_path / "out.pt")
    from transformers import CLIPModel

    with torch.no_grad():
        expected = CLIPModel.from_pretrained(checkpoints[0].path).get_text_features(
            input_ids=torch.tensor([[0, 5, 6, 1]])).pooler_output
    assert loaded["class"] == "CLIPModel" and not loaded["cf_hf"]
    assert torch.equal(loaded["text"], expected)


def test_bad_input_is_refused_with_a_clear_error(saved_original, tmp_path):
    with pytest.raises(MethodError, match="no attribute 'hair'"):
        load_attribute_prompts("hair")
    with pytest.raises(MethodError, match="needs at least two values.*'female'"):
        load_attribute_prompts("gender", values=["female"])
    with pytest.raises(MethodError, match=r"no prompts for the value\(s\) \['nonbinary'\]"):
        load_attribute_prompts("gender", values=["Female", "nonbinary"])
    with pytest.raises(MethodError, match=r"fairness weight must be in \(0, 1\], got 1.5"):
        fit_closed_form(saved_original, tmp_path / "methods", "gender", weights=[1.5])
    assert not (tmp_path / "methods").exists()
    assert load_attribute_prompts("race", values=["East Asian", "White"]).words == {"East Asian": "East Asian",
                                                                                    "White": "White"}


def test_push_model_plans_a_card_that_names_the_folded_method_and_loads_as_plain_clip(saved_original, tmp_path):
    from hub_scripts.push_model import plan_model_push

    (checkpoint,) = fit_closed_form(saved_original, tmp_path / "methods", "gender", weights=[0.9])
    (plan,) = plan_model_push(checkpoint.path, "org/clip-closed-form", base_model="openai/clip-vit-base-patch32")
    card = plan.extra_files["README.md"].decode()
    assert "debiased with the `closed_form` method (closed_form-weight=0.9)" in card and "| weight | 0.9 |" in card
    assert "**At query time** it needs nothing beyond this checkpoint: the method's linear map is folded" in card
    assert "CLIPModel.from_pretrained" in card and "register_model_types" not in card


def _two_attribute_embedder(directions: dict[str, np.ndarray], seed: int = 0):
    """A text "encoder" with two planted attribute directions: `female`/`male` move along
    directions["gender"] (±2), `young`/`elderly` along directions["age"] (±2); every other word is a
    fixed random vector orthogonal to both."""
    generator = np.random.default_rng(seed)
    planted = np.stack(list(directions.values()))
    signs = {"female": ("gender", 2.0), "male": ("gender", -2.0), "young": ("age", 2.0), "elderly": ("age", -2.0)}
    vectors: dict[str, np.ndarray] = {}

    def embed(texts):
        rows = []
        for text in texts:
            total = np.zeros(DIMENSION)
            for word in text.strip(".").split():
                if word in signs:
                    attribute, sign = signs[word]
                    total += sign * directions[attribute]
                    continue
                if word not in vectors:
                    vector = 0.3 * generator.normal(size=DIMENSION)
                    vectors[word] = vector - planted.T @ np.linalg.lstsq(planted.T, vector, rcond=None)[0]
                total += vectors[word]
            rows.append(total / np.linalg.norm(total))
        return np.stack(rows)

    return embed


def _orthonormal_directions(seed: int = 3) -> dict[str, np.ndarray]:
    generator = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(generator.normal(size=(DIMENSION, 2)))
    return {"gender": basis[:, 0], "age": basis[:, 1]}


def test_one_attribute_given_as_a_list_is_bit_identical_to_the_single_attribute_fit():
    embed = _word_embedder(np.eye(DIMENSION)[0])
    prompts = load_attribute_prompts("gender")
    (single,) = closed_form_maps(embed, prompts, weights=[0.8])
    (listed,) = closed_form_maps(embed, [prompts], weights=[0.8])
    assert np.array_equal(single.text_map, listed.text_map) and np.array_equal(single.image_map, listed.image_map)
    assert single.settings == listed.settings == {"weight": 0.8, "attribute": "gender", "kept_share": shrink_factor(0.8)}
    assert single.fitted_on == listed.fitted_on and "subspace_ranks" not in single.fitted_on


def test_the_joint_map_equals_the_formula_on_the_union_of_the_attributes_subspaces_rebuilt_independently():
    embed = _two_attribute_embedder(_orthonormal_directions())
    prompts = [load_attribute_prompts("gender"), load_attribute_prompts("age")]
    fits = closed_form_maps(embed, prompts, weights=[1.0, 0.5])
    # Independently: every value's prototype minus its attribute's first prototype spans that
    # attribute's subspace; the union's projection is the Gram-Schmidt (QR) projection of all of them.
    spanning = []
    for attribute in prompts:
        means = [embed(list(attribute.prototype_prompts[value])).mean(axis=0) for value in attribute.values]
        spanning += [mean - means[0] for mean in means[1:]]
    basis, _ = np.linalg.qr(np.stack(spanning, axis=1))
    assert basis.shape[1] == 3  # gender: 1 direction, age: 2
    for fit, weight in zip(fits, (1.0, 0.5)):
        gamma = math.sqrt(1 - weight) / (math.sqrt(weight) + math.sqrt(1 - weight))
        expected = np.eye(DIMENSION) - (1 - gamma) * basis @ basis.T
        np.testing.assert_allclose(fit.text_map, expected, atol=1e-10)
        np.testing.assert_allclose(fit.image_map, expected, atol=1e-10)
        assert fit.settings["attributes"] == ["gender", "age"] and "attribute" not in fit.settings
        assert fit.fitted_on["subspace_ranks"] == {"gender": 1, "age": 2} and fit.fitted_on["subspace_rank"] == 3


def test_two_planted_attribute_directions_are_both_removed_maxskew_falls_for_each():
    from cf_hf.metrics.fairness import max_skew

    directions = _orthonormal_directions()
    embed = _two_attribute_embedder(directions)
    generator = np.random.default_rng(0)
    labels = {"gender": generator.integers(2, size=400), "age": generator.integers(2, size=400)}
    images = generator.normal(size=(400, DIMENSION))
    for name, label in labels.items():
        images = images + 3.0 * (2 * label - 1)[:, None] * directions[name]
    queries = generator.normal(size=(10, DIMENSION)) + 2.0 * directions["gender"] + 2.0 * directions["age"]

    def mean_max_skew(images, queries, label):
        images = images / np.linalg.norm(images, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        return float(max_skew(queries @ images.T, label, k=100).mean())

    (joint,) = closed_form_maps(embed, [load_attribute_prompts("gender"), load_attribute_prompts("age")], weights=[1.0])
    (gender_only,) = closed_form_maps(embed, load_attribute_prompts("gender"), weights=[1.0])
    for name, label in labels.items():
        before = mean_max_skew(images, queries, label)
        after = mean_max_skew(joint.apply(images, "image"), joint.apply(queries, "text"), label)
        assert before > 0.5 and after < 0.3 * before, name
    # Removing gender alone leaves the age skew: the joint fit is what removes both.
    age_before = mean_max_skew(images, queries, labels["age"])
    assert mean_max_skew(gender_only.apply(images, "image"), gender_only.apply(queries, "text"), labels["age"]) > 0.5 * age_before


def test_several_attributes_fit_from_a_checkpoint_and_bad_attribute_lists_are_refused(saved_original, tmp_path):
    (checkpoint,) = fit_closed_form(saved_original, tmp_path / "methods", ["gender", "age"], weights=[1.0])
    assert checkpoint.settings["attributes"] == ["gender", "age"]
    with pytest.raises(MethodError, match="attribute 'gender' is given twice"):
        fit_closed_form(saved_original, tmp_path / "other", ["gender", "age", "gender"], weights=[1.0])
    with pytest.raises(MethodError, match="no attribute 'hair'"):
        fit_closed_form(saved_original, tmp_path / "other", ["gender", "hair"], weights=[1.0])
    with pytest.raises(MethodError, match="values .* name one attribute's values"):
        fit_closed_form(saved_original, tmp_path / "other", ["gender", "age"], weights=[1.0], values=["female", "male"])
    assert not (tmp_path / "other").exists()
