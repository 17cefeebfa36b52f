"""SFID: the planted attribute removed, its formula against an independent reference, bad input."""

from types import SimpleNamespace

import numpy as np
import pytest
from testing_utils.embeddings import mean_max_skew, planted_world, unit

from cf_hf.methods import MethodError
from cf_hf.methods.sfid.estimator import sfid_transforms
from cf_hf.methods.sfid.fit import fit_sfid, sfid_gallery_transforms

# The attribute lives on two coordinates, as SFID assumes.
COORDINATE_DIRECTION = np.zeros(16)
COORDINATE_DIRECTION[[3, 11]] = 1.0


@pytest.fixture(scope="module")
def world():
    return planted_world(direction=COORDINATE_DIRECTION)


@pytest.fixture(scope="module")
def fits(world):
    return sfid_transforms(world.reference, world.reference_labels, [2, 6], attribute="gender")


def test_sfid_replaces_the_coordinates_that_carry_a_planted_attribute(fits):
    assert sorted(fits[0].settings["replaced"]["image"]) == [3, 11]
    assert [fit.name for fit in fits] == ["sfid-m=2", "sfid-m=6"]


def test_sfid_removes_the_skew_a_planted_attribute_direction_causes(world, fits):
    before = mean_max_skew(world.queries, world.gallery, world.gallery_labels)
    (fit, _) = fits
    after = mean_max_skew(fit.apply(world.queries, "text"), fit.apply(world.gallery, "image"), world.gallery_labels)
    assert before > 0.5
    assert after < 0.25 * before


def test_sfid_equals_an_independent_reference_of_its_formula(world, fits):
    """The paper's recipe written directly with scikit-learn: forest on one stratified part, the m most
    important coordinates set to the held-out low-confidence samples' mean, then unit norm."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    embeddings = unit(world.reference)
    labels = np.asarray([str(label) for label in world.reference_labels])
    fit_rows, held_rows = train_test_split(np.arange(len(labels)), test_size=round(0.2 * len(labels)),
                                           stratify=labels, random_state=0)
    fit_rows, held_rows = np.sort(fit_rows), np.sort(held_rows)
    forest = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1)
    forest.fit(embeddings[fit_rows], labels[fit_rows])
    confidence = forest.predict_proba(embeddings[held_rows]).max(axis=1)
    neutral = embeddings[held_rows][confidence < 0.7].mean(axis=0)
    for fit in fits:
        m = fit.settings["m"]
        important = np.argsort(forest.feature_importances_)[::-1][:m]
        expected = unit(world.gallery).copy()
        expected[:, important] = neutral[important]
        expected = unit(expected)
        np.testing.assert_allclose(fit.apply(world.gallery, "image"), expected, atol=1e-12)
        np.testing.assert_allclose(fit.apply(world.queries, "text"), _replaced(world.queries, important, neutral),
                                   atol=1e-12)


def _replaced(rows, coordinates, neutral):
    rows = unit(rows).copy()
    rows[:, coordinates] = neutral[coordinates]
    return unit(rows)


def test_sfid_is_exactly_affine_a_diagonal_keep_mask_and_an_offset_on_the_replaced_coordinates(fits):
    fit = fits[0]
    replaced = fit.settings["replaced"]["image"]
    keep = np.ones(16)
    keep[replaced] = 0
    np.testing.assert_array_equal(fit.image_matrix, np.diag(keep))
    assert np.count_nonzero(fit.image_offset) == len(replaced)


def test_sfid_fits_the_text_tower_on_labelled_texts_when_given(world):
    other = planted_world(direction=np.roll(COORDINATE_DIRECTION, 2), seed=1)
    (fit,) = sfid_transforms(world.reference, world.reference_labels, [2], attribute="gender",
                             text_embeddings=other.reference, text_labels=other.reference_labels)
    assert sorted(fit.settings["replaced"]["image"]) == [3, 11]
    assert sorted(fit.settings["replaced"]["text"]) == [5, 13]
    assert fit.settings["text_fit"] == "texts"


@pytest.mark.parametrize(("labels", "message"), [
    (np.zeros(600, dtype=int), "single value"),
    ([None] + [0, 1] * 299 + [1], "no 'gender' label"),
])
def test_sfid_refuses_labels_it_cannot_fit(world, labels, message):
    with pytest.raises(MethodError, match=message):
        sfid_transforms(world.reference, labels, [2], attribute="gender")


@pytest.mark.parametrize("count", [0, 17])
def test_sfid_refuses_m_outside_the_embedding(world, count):
    with pytest.raises(MethodError, match=rf"prune_counts \[{count}\].*embedding size 16"):
        sfid_transforms(world.reference, world.reference_labels, [count], attribute="gender")


def test_sfid_refuses_a_threshold_no_held_out_sample_is_below(world):
    with pytest.raises(MethodError, match="no held-out sample has a confidence below 0.01"):
        sfid_transforms(world.reference, world.reference_labels, [2], attribute="gender", confidence_threshold=0.01)


def test_sfid_refuses_text_embeddings_without_their_labels(world):
    with pytest.raises(MethodError, match="text_embeddings and text_labels together"):
        sfid_transforms(world.reference, world.reference_labels, [2], attribute="gender",
                        text_embeddings=world.reference)


def test_fit_sfid_refuses_a_gallery_without_the_attribute_and_writes_nothing(tmp_path):
    gallery = SimpleNamespace(name="faces", attributes={"race": ["a", "b"]}, images=[])
    with pytest.raises(MethodError, match="gallery 'faces' has no attribute 'gender'; it has \\['race'\\]"):
        fit_sfid("unused", tmp_path / "out", gallery, "gender", [2])
    assert not (tmp_path / "out").exists()


def test_sfid_fits_on_a_checkpoints_embeddings_of_a_labelled_gallery(tiny_clip_dir, tmp_path):
    from testing_utils.evaluation import make_fairface

    from cf_hf.evaluation import load_fairface

    gallery = load_fairface(make_fairface(tmp_path / "fairface", n=40))
    # The test images' colour encodes gender (every sample confidently told): fit on race, which it does not.
    fits = sfid_gallery_transforms(tiny_clip_dir, gallery, "race", [1, 4])
    assert [fit.name for fit in fits] == ["sfid-m=1", "sfid-m=4"]
    assert fits[0].fitted_on["gallery"] == gallery.name
    dimension = fits[0].image_matrix.shape[0]
    assert np.trace(fits[1].image_matrix) == dimension - 4


# Two attributes, each on two coordinates of its own (as SFID assumes).
TWO_ATTRIBUTE_DIRECTIONS = {"gender": np.eye(16)[3] + np.eye(16)[11], "age": np.eye(16)[5] + np.eye(16)[8]}


@pytest.fixture(scope="module")
def two_attribute_world():
    from testing_utils.embeddings import planted_two_attribute_world

    return planted_two_attribute_world(TWO_ATTRIBUTE_DIRECTIONS)


def test_one_attribute_as_a_mapping_is_bit_identical_to_the_single_attribute_fit(world, fits):
    listed = sfid_transforms(world.reference, {"gender": world.reference_labels}, [2, 6])
    for single, mapped in zip(fits, listed):
        assert np.array_equal(single.image_matrix, mapped.image_matrix)
        assert np.array_equal(single.image_offset, mapped.image_offset)
        assert np.array_equal(single.text_offset, mapped.text_offset)
        assert single.settings == mapped.settings and single.fitted_on == mapped.fitted_on


def test_sfid_removes_two_planted_attributes_at_once(two_attribute_world):
    world = two_attribute_world
    (fit,) = sfid_transforms(world.reference, world.reference_labels, [2])
    assert sorted(fit.settings["replaced"]["image"]) == [3, 5, 8, 11]
    assert fit.settings["attributes"] == ["gender", "age"] and "attribute" not in fit.settings
    for name, labels in world.gallery_labels.items():
        before = mean_max_skew(world.queries, world.gallery, labels)
        after = mean_max_skew(fit.apply(world.queries, "text"), fit.apply(world.gallery, "image"), labels)
        assert before > 0.4 and after < 0.3 * before, name


def test_sfid_joint_fit_equals_an_independent_reference_of_the_union_rule(two_attribute_world):
    """Per attribute, the paper's recipe with scikit-learn (forest, m most important coordinates,
    held-out low-confidence mean); jointly: the union of the coordinates, each set to the mean of the
    neutral values of the attributes that chose it, then unit norm."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    world = two_attribute_world
    embeddings = unit(world.reference)
    m = 3
    chosen, neutrals = {}, {}
    for name, raw in world.reference_labels.items():
        labels = np.asarray([str(label) for label in raw])
        fit_rows, held_rows = train_test_split(np.arange(len(labels)), test_size=round(0.2 * len(labels)),
                                               stratify=labels, random_state=0)
        fit_rows, held_rows = np.sort(fit_rows), np.sort(held_rows)
        forest = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1)
        forest.fit(embeddings[fit_rows], labels[fit_rows])
        confidence = forest.predict_proba(embeddings[held_rows]).max(axis=1)
        neutrals[name] = embeddings[held_rows][confidence < 0.7].mean(axis=0)
        chosen[name] = set(np.argsort(forest.feature_importances_)[::-1][:m].tolist())
    expected = unit(world.gallery).copy()
    for coordinate in set().union(*chosen.values()):
        values = [neutrals[name][coordinate] for name in chosen if coordinate in chosen[name]]
        expected[:, coordinate] = np.mean(values)
    (fit,) = sfid_transforms(world.reference, world.reference_labels, [m])
    assert set(fit.settings["replaced"]["image"]) == set().union(*chosen.values())
    np.testing.assert_allclose(fit.apply(world.gallery, "image"), unit(expected), atol=1e-12)


def test_fit_sfid_refuses_bad_attribute_lists_naming_the_problem(tmp_path):
    gallery = SimpleNamespace(name="faces", attributes={"gender": ["f", "m"], "age": ["y", "y"]}, images=[])
    with pytest.raises(MethodError, match="attribute 'gender' is given twice"):
        fit_sfid("unused", tmp_path / "out", gallery, ["gender", "age", "gender"], [2])
    with pytest.raises(MethodError, match="gallery 'faces' has no attribute 'race'"):
        fit_sfid("unused", tmp_path / "out", gallery, ["gender", "race"], [2])
    labels = {"gender": np.tile([0, 1], 50), "age": np.zeros(100, dtype=int)}
    with pytest.raises(MethodError, match="'age'"):
        sfid_transforms(np.random.default_rng(0).normal(size=(100, 16)), labels, [2])
    assert not (tmp_path / "out").exists()
