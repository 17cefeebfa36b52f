"""The bias-alignment captions: the authors' per-attribute templates against a table written out by
hand from their `datasets.py`, templates of one's own, the counterfactual redrawn at every epoch
(seeded), and bad caption settings."""

from __future__ import annotations

import numpy as np
import pytest

from cf_hf.methods.bias_alignment.captions import (
    authors_caption_setting,
    caption_rows,
    caption_setting,
    load_caption_settings,
)
from cf_hf.methods.bias_alignment.rows import BiasAlignmentData
from cf_hf.methods.linear import MethodError

FAIRFACE_RACES = ["White", "Southeast Asian", "Middle Eastern", "Black", "Indian", "Latino_Hispanic", "East Asian"]
# Seven people, one per race, both genders, every age word: FairFace's label values.
LABELS = {
    "race": FAIRFACE_RACES,
    "gender": ["Male", "Female", "Male", "Female", "Female", "Male", "Female"],
    "age": ["30-39", "3-9", "20-29", "more than 70", "60-69", "more than 70", "50-59"],
}
AGE_WORD = {"30-39": "middle-aged", "3-9": "young", "20-29": "young", "more than 70": "old", "60-69": "old",
            "50-59": "middle-aged"}


def _expected(setting: str, row: int) -> tuple[str, set[str]]:
    """Row `row`'s caption and every counterfactual the authors' code can write for it (datasets.py,
    FairFaceDebiasing_<setting>), with cf_hf's uniform race draw (all six other races)."""
    race, gender, age = (LABELS[name][row] for name in ("race", "gender", "age"))
    other_gender = {"Male": "female", "Female": "male"}[gender]
    other_races = [other for other in FAIRFACE_RACES if other != race]
    other_ages = [word for word in ("young", "middle-aged", "old") if word != AGE_WORD[age]]
    if setting == "gender":
        return (f"This is the photo of a {race} {gender.lower()} aged {age}.",
                {f"This is the photo of a {race} {other_gender} aged {age}."})
    if setting == "age":
        return (f"This is the photo of a {AGE_WORD[age]} {race} {gender.lower()}.",
                {f"This is the photo of a {word} {race} {gender.lower()}." for word in other_ages})
    if setting == "race":
        return (f"This is the photo of a {age} {race} {gender.lower()}.",
                {f"This is the photo of a {age} {other} {gender.lower()}." for other in other_races})
    return (f"This is the photo of a {age} {race} {gender.lower()} celebrity.",
            {f"This is the photo of a {word} {other} {other_gender}." for word in other_ages for other in other_races})


@pytest.mark.parametrize("setting, attributes", [("gender", ["gender"]), ("age", ["age"]), ("race", ["race"]),
                                                 ("joint", ["race", "gender", "age"])])
def test_the_authors_captions_and_counterfactuals_per_attribute_match_their_code(setting, attributes):
    rows = caption_rows(LABELS, caption_setting(attributes))
    for row in range(len(LABELS["race"])):
        caption, counterfactuals = _expected(setting, row)
        assert rows.captions[row] == caption
        drawn_from = [rows.counterfactual_captions[index] for index in rows.counterfactual_choices[row]]
        assert sorted(drawn_from) == sorted(counterfactuals)


def test_the_shipped_settings_are_the_authors_four_and_name_the_race_draw_difference():
    settings = load_caption_settings()
    assert {name: sorted(setting.attributes) for name, setting in settings.items()} == {
        "gender": ["gender"], "age": ["age"], "race": ["race"], "joint": ["age", "gender", "race"]}
    for name in ("race", "joint"):
        assert "East Asian" in settings[name].difference
        assert settings[name].record()["difference_from_authors"] == settings[name].difference
    assert settings["gender"].record()["difference_from_authors"] is None


def test_a_template_of_ones_own_uses_its_words_for_caption_and_counterfactual():
    labels = {"gender": ["female", "male"], "age": ["young_adult", "elderly"]}
    setting = caption_setting(["gender"], "a photo of a {age} {gender}", {"gender": {"female": "woman", "male": "man"}})
    rows = caption_rows(labels, setting)
    assert rows.captions == ["a photo of a young_adult woman", "a photo of a elderly man"]
    assert [[rows.counterfactual_captions[i] for i in choices] for choices in rows.counterfactual_choices] == [
        ["a photo of a young_adult man"], ["a photo of a elderly woman"]]


def test_words_given_with_the_authors_captions_override_theirs():
    rows = caption_rows(LABELS, caption_setting(["gender"], words={"gender": {"Male": "man", "Female": "woman"}}))
    assert rows.captions[0] == "This is the photo of a White man aged 30-39."
    assert rows.counterfactual_captions[rows.counterfactual_choices[0][0]] == "This is the photo of a White woman aged 30-39."


def test_labels_that_share_a_word_are_not_each_others_counterfactual():
    """Age is swapped among young / middle-aged / old: 20-29 never becomes 3-9 (both young)."""
    labels = {"race": ["White"] * 3, "gender": ["Male"] * 3, "age": ["20-29", "3-9", "60-69"]}
    rows = caption_rows(labels, caption_setting(["age"]))
    assert [rows.counterfactual_captions[i] for i in rows.counterfactual_choices[0]] == [
        "This is the photo of a old White male."]


def test_distinct_counterfactual_captions_are_kept_once():
    labels = {name: values * 50 for name, values in LABELS.items()}
    rows = caption_rows(labels, caption_setting(["race", "gender", "age"]))
    assert len(rows.captions) == 350
    assert len(rows.counterfactual_captions) == len(set(rows.counterfactual_captions)) <= 7 * 2 * 3


# -- the redraw ---------------------------------------------------------------------------------


def _data(seed: int) -> BiasAlignmentData:
    """Three rows; row 0 may show counterfactual 0, 1 or 2, row 1 only 3, row 2 only 4. Counterfactual
    i's embedding is (i, i)."""
    counterfactuals = np.repeat(np.arange(5, dtype=np.float32)[:, None], 2, axis=1)
    return BiasAlignmentData(np.ones((3, 2)), np.ones((3, 2)), counterfactuals,
                             counterfactual_choices=[np.array([0, 1, 2]), np.array([3]), np.array([4])], seed=seed)


def _shown(data: BiasAlignmentData, epochs: int) -> list[list[int]]:
    """Per epoch, the counterfactual index each row shows (read back from its embedding)."""
    shown = []
    for epoch in range(epochs):
        data.set_epoch(epoch)
        shown.append(data.__getitems__([0, 1, 2])["counterfactual_text_features"][:, 0].int().tolist())
    return shown


def test_the_counterfactual_is_redrawn_every_epoch_among_the_rows_choices():
    data = _data(seed=0)
    shown = _shown(data, 60)
    first_row = [epoch[0] for epoch in shown]
    assert set(first_row) == {0, 1, 2}  # two fetches of one row differ; each choice comes up
    assert all(epoch[1:] == [3, 4] for epoch in shown)
    data.set_epoch(7)
    assert data[0]["counterfactual_text_features"][0].item() == shown[7][0]  # one epoch, one draw per row


def test_the_same_seed_gives_the_same_sequence_of_counterfactuals():
    assert _shown(_data(seed=3), 30) == _shown(_data(seed=3), 30)
    assert _shown(_data(seed=3), 30) != _shown(_data(seed=4), 30)


def test_the_trainer_tells_the_rows_each_epoch(tmp_path):
    from cf_hf.methods.bias_alignment.trainer import BiasAlignmentArguments, train_bias_alignment
    from cf_hf.utils.tiny_clip import build_tiny_clip

    model, processor = build_tiny_clip(texts=["a photo"] * 4, seed=0)
    model.save_pretrained(tmp_path / "original")
    processor.save_pretrained(tmp_path / "original")
    dimension = model.config.projection_dim
    epochs_set = []

    class Recording(BiasAlignmentData):
        def set_epoch(self, epoch):
            epochs_set.append(epoch)
            super().set_epoch(epoch)

    rng = np.random.default_rng(0)
    data = Recording(rng.normal(size=(8, dimension)), rng.normal(size=(8, dimension)), rng.normal(size=(16, dimension)),
                     counterfactual_choices=[np.array([row, row + 8]) for row in range(8)])
    args = BiasAlignmentArguments(output_dir=str(tmp_path / "ba"), per_device_train_batch_size=8, queue_size=16,
                                  num_train_epochs=3, use_cpu=True, save_strategy="no", disable_tqdm=True,
                                  eval_strategy="no", early_stopping_patience=0, report_to="none")
    train_bias_alignment(tmp_path / "original", data, args)
    assert list(dict.fromkeys(epochs_set)) == [0, 1, 2]


# -- bad settings -------------------------------------------------------------------------------


def test_bad_caption_settings_are_refused_with_a_clear_error(tmp_path):
    with pytest.raises(MethodError, match="no caption setting of the authors removes gender race.*--caption_template"):
        authors_caption_setting(["gender", "race"])
    bad = tmp_path / "captions.yaml"
    bad.write_text("format: cf_hf-bias-alignment-captions\nsettings:\n  gender:\n    attributes: [gender]\n"
                   "    caption: 'a {race} person'\n")
    with pytest.raises(MethodError, match=r"captions.yaml: settings.gender.caption 'a \{race\} person' does not mention"):
        load_caption_settings(bad)
    bad.write_text("format: cf_hf-bias-alignment-captions\nsettings:\n  gender:\n    attributes: [gender]\n"
                   "    caption: 'a {gender}'\n    wrods: {}\n")
    with pytest.raises(MethodError, match=r"settings.gender has unknown key\(s\) \['wrods'\]"):
        load_caption_settings(bad)
    with pytest.raises(MethodError, match="does not label"):
        caption_rows({"gender": ["Male", "Female"]}, caption_setting(["gender"]), source="the gallery 'x'")
    with pytest.raises(MethodError, match="single word"):
        caption_rows({"age": ["20-29", "3-9"], "race": ["White"] * 2, "gender": ["Male"] * 2}, caption_setting(["age"]))
    with pytest.raises(MethodError, match="no counterfactual caption to draw"):
        BiasAlignmentData(np.ones((2, 2)), np.ones((2, 2)), np.ones((1, 2)),
                          counterfactual_choices=[np.array([0]), np.array([], dtype=np.int64)])
    with pytest.raises(MethodError, match="counterfactual caption index out of range"):
        BiasAlignmentData(np.ones((2, 2)), np.ones((2, 2)), np.ones((1, 2)),
                          counterfactual_choices=[np.array([0]), np.array([1])])
