"""SPD: the planted attribute subspace found and removed, its formula against an independent
reference, the property it is built on (the attribute no longer linearly decodable), bad input."""

from types import SimpleNamespace

import numpy as np
import pytest
from testing_utils.embeddings import mean_max_skew, planted_world, unit

from cf_hf.methods import MethodError
from cf_hf.methods.spd.estimator import inlp_directions, spd_transforms
from cf_hf.methods.spd.fit import fit_spd, spd_gallery_transforms


@pytest.fixture(scope="module")
def world():
    # A random direction, spread over every coordinate: what SPD is for.
    return planted_world(seed=3)


@pytest.fixture(scope="module")
def fits(world):
    return spd_transforms(world.reference, world.reference_labels, [1, 3], attribute="gender")


def _classifier_accuracy(embeddings, labels, seed=0):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    return cross_val_score(LogisticRegression(max_iter=2000, random_state=seed), embeddings, labels, cv=5).mean()


def test_spd_first_axis_is_the_planted_direction(world):
    directions = inlp_directions(unit(world.reference), world.reference_labels.astype(str), max_axes=3)
    assert directions.shape == (3, 16)
    np.testing.assert_allclose(directions @ directions.T, np.eye(3), atol=1e-10)
    assert abs(directions[0] @ world.direction) > 0.95


def test_spd_leaves_the_attribute_not_linearly_decodable(world, fits):
    labels = world.gallery_labels
    assert _classifier_accuracy(unit(world.gallery), labels) > 0.95
    debiased = fits[0].apply(world.gallery, "image")
    assert _classifier_accuracy(debiased, labels) < 0.65


def test_spd_removes_the_skew_a_planted_attribute_direction_causes(world, fits):
    before = mean_max_skew(world.queries, world.gallery, world.gallery_labels)
    fit = fits[0]
    after = mean_max_skew(fit.apply(world.queries, "text"), fit.apply(world.gallery, "image"), world.gallery_labels)
    assert before > 0.5
    assert after < 0.25 * before


def test_spd_equals_an_independent_reference_of_its_formula(world, fits):
    """z' = z − Σ_j (z·u_j) u_j + Σ_j (μ·u_j) u_j, written per direction, with μ the held-out
    low-confidence samples' mean computed here with scikit-learn directly."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    embeddings = unit(world.reference)
    labels = np.asarray([str(label) for label in world.reference_labels])
    fit_rows, held_rows = train_test_split(np.arange(len(labels)), test_size=round(0.2 * len(labels)),
                                           stratify=labels, random_state=0)
    fit_rows, held_rows = np.sort(fit_rows), np.sort(held_rows)
    forest = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1)
    forest.fit(embeddings[fit_rows], labels[fit_rows])
    neutral = embeddings[held_rows][forest.predict_proba(embeddings[held_rows]).max(axis=1) < 0.7].mean(axis=0)
    directions = inlp_directions(embeddings[fit_rows], labels[fit_rows], max_axes=3)
    for fit in fits:
        expected = []
        for row in unit(world.gallery):
            out = row.copy()
            for direction in directions[: fit.settings["axes"]]:
                out += (neutral @ direction - row @ direction) * direction
            expected.append(out / np.linalg.norm(out))
        np.testing.assert_allclose(fit.apply(world.gallery, "image"), np.array(expected), atol=1e-12)


def test_spd_sets_every_embeddings_component_in_the_subspace_to_the_neutral_values(world, fits):
    fit = fits[1]
    mapped = unit(world.gallery) @ fit.image_matrix.T + fit.image_offset
    subspace = np.eye(16) - fit.image_matrix  # the projection onto the removed subspace
    np.testing.assert_allclose(mapped @ subspace, np.tile(fit.image_offset, (len(mapped), 1)), atol=1e-12)
    np.testing.assert_allclose(subspace @ subspace, subspace, atol=1e-12)
    assert round(np.trace(subspace)) == 3


def test_spd_is_the_same_map_for_both_towers_without_labelled_texts(fits):
    fit = fits[0]
    np.testing.assert_array_equal(fit.image_matrix, fit.text_matrix)
    np.testing.assert_array_equal(fit.image_offset, fit.text_offset)
    assert [one.name for one in fits] == ["spd-axes=1", "spd-axes=3"]


@pytest.mark.parametrize(("labels", "message"), [
    (np.ones(600, dtype=int), "single value"),
    ([0] * 599 + [1], "single sample"),
])
def test_spd_refuses_labels_it_cannot_fit(world, labels, message):
    with pytest.raises(MethodError, match=message):
        spd_transforms(world.reference, labels, [1], attribute="gender")


@pytest.mark.parametrize("axes", [0, 16])
def test_spd_refuses_a_number_of_axes_outside_the_embedding(world, axes):
    with pytest.raises(MethodError, match=rf"axes \[{axes}\].*embedding size minus one \(15\)"):
        spd_transforms(world.reference, world.reference_labels, [axes], attribute="gender")


def test_spd_refuses_more_axes_than_the_attribute_has_directions():
    # Two values, one coordinate: after one direction the rest is noise that a classifier still
    # weights, so ask for every axis on embeddings that are the attribute alone.
    labels = np.tile([0, 1], 100)
    embeddings = np.zeros((200, 4))
    embeddings[:, 0] = 1.0
    embeddings[:, 1] = 2.0 * labels - 1.0
    with pytest.raises(MethodError, match="INLP found 1 direction"):
        spd_transforms(embeddings, labels, [3], attribute="gender", confidence_threshold=1.0)


def test_fit_spd_refuses_a_gallery_without_the_attribute_and_writes_nothing(tmp_path):
    gallery = SimpleNamespace(name="faces", attributes={"race": ["a", "b"]}, images=[])
    with pytest.raises(MethodError, match="gallery 'faces' has no attribute 'gender'; it has \\['race'\\]"):
        fit_spd("unused", tmp_path / "out", gallery, "gender", [1])
    assert not (tmp_path / "out").exists()


def test_spd_fits_on_a_checkpoints_embeddings_of_a_labelled_gallery(tiny_clip_dir, tmp_path):
    from testing_utils.evaluation import make_fairface

    from cf_hf.evaluation import load_fairface

    gallery = load_fairface(make_fairface(tmp_path / "fairface", n=40))
    fits = spd_gallery_transforms(tiny_clip_dir, gallery, "race", [1, 2])
    assert [fit.name for fit in fits] == ["spd-axes=1", "spd-axes=2"]
    assert fits[1].fitted_on["gallery"] == gallery.name
    assert round(np.trace(np.eye(len(fits[1].image_offset)) - fits[1].image_matrix)) == 2


@pytest.fixture(scope="module")
def two_attribute_world():
    from testing_utils.embeddings import planted_two_attribute_world

    generator = np.random.default_rng(5)
    first, second = generator.normal(size=(2, 16))  # random, not orthogonal: the union is orthonormalized
    return planted_two_attribute_world({"gender": first, "age": second})


def test_one_attribute_as_a_mapping_is_bit_identical_to_the_single_attribute_fit(world, fits):
    listed = spd_transforms(world.reference, {"gender": world.reference_labels}, [1, 3])
    for single, mapped in zip(fits, listed):
        assert np.array_equal(single.image_matrix, mapped.image_matrix)
        assert np.array_equal(single.image_offset, mapped.image_offset)
        assert single.settings == mapped.settings and single.fitted_on == mapped.fitted_on


def test_spd_removes_two_planted_attributes_at_once(two_attribute_world):
    world = two_attribute_world
    (fit,) = spd_transforms(world.reference, world.reference_labels, [1])
    assert fit.settings["attributes"] == ["gender", "age"]
    for name, labels in world.gallery_labels.items():
        before = mean_max_skew(world.queries, world.gallery, labels)
        after = mean_max_skew(fit.apply(world.queries, "text"), fit.apply(world.gallery, "image"), labels)
        assert before > 0.3 and after < 0.3 * before, name
        assert _classifier_accuracy(fit.apply(world.gallery, "image"), labels) < 0.65, name


def test_spd_joint_fit_equals_an_independent_reference_of_the_union_rule(two_attribute_world):
    """Per attribute, INLP's first k directions and the held-out low-confidence mean (scikit-learn here);
    jointly: Gram-Schmidt over all the attributes' directions, z' = z − Σ_j (z·u_j) u_j + Σ_j (μ̄·u_j) u_j
    with μ̄ the mean of the attributes' neutral values, then unit norm."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    world = two_attribute_world
    embeddings = unit(world.reference)
    axes = 2
    directions, neutrals = [], []
    for raw in world.reference_labels.values():
        labels = np.asarray([str(label) for label in raw])
        fit_rows, held_rows = train_test_split(np.arange(len(labels)), test_size=round(0.2 * len(labels)),
                                               stratify=labels, random_state=0)
        fit_rows, held_rows = np.sort(fit_rows), np.sort(held_rows)
        forest = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1)
        forest.fit(embeddings[fit_rows], labels[fit_rows])
        held = embeddings[held_rows]
        neutrals.append(held[forest.predict_proba(held).max(axis=1) < 0.7].mean(axis=0))
        directions += list(inlp_directions(embeddings[fit_rows], labels[fit_rows], max_axes=axes))
    orthonormal = []
    for direction in directions:  # Gram-Schmidt
        for done in orthonormal:
            direction = direction - (direction @ done) * done
        orthonormal.append(direction / np.linalg.norm(direction))
    neutral = np.mean(neutrals, axis=0)
    expected = []
    for row in unit(world.gallery):
        out = row.copy()
        for direction in orthonormal:
            out += (neutral @ direction - row @ direction) * direction
        expected.append(out / np.linalg.norm(out))
    (fit,) = spd_transforms(world.reference, world.reference_labels, [axes])
    np.testing.assert_allclose(fit.apply(world.gallery, "image"), np.array(expected), atol=1e-10)


def test_fit_spd_refuses_bad_attribute_lists_naming_the_problem(tmp_path):
    gallery = SimpleNamespace(name="faces", attributes={"gender": ["f", "m"]}, images=[])
    with pytest.raises(MethodError, match="attribute 'gender' is given twice"):
        fit_spd("unused", tmp_path / "out", gallery, ["gender", "gender"], [1])
    with pytest.raises(MethodError, match="gallery 'faces' has no attribute 'age'"):
        fit_spd("unused", tmp_path / "out", gallery, ["gender", "age"], [1])
    labels = {"gender": np.tile([0, 1], 50), "age": np.zeros(100, dtype=int)}
    with pytest.raises(MethodError, match="'age'"):
        spd_transforms(np.random.default_rng(0).normal(size=(100, 16)), labels, [1])
    assert not (tmp_path / "out").exists()
