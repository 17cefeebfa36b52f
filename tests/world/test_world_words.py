"""Captions of the world's web corpus that sometimes name the person's appearance."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cf_hf.world import render, vocabulary
from cf_hf.world.corpus import ATTRIBUTES, STEREOTYPES, CorpusConfig, make_corpus, naming_probability
from cf_hf.world.original import corpus_digest

# `corpus_digest` (images and captions) of `make_corpus(CorpusConfig(size=2000, seed=seed))`,
# computed with the code from before captions named people (commit c008031).
UNNAMED_DIGESTS = {
    0: "a641cf564e7b24506ec357c722b0b239f31c0f17f3d1d342668ced9472a5a77f",
    7: "ecc87f644134f2877b8d07577a1249e9dc2db41879e60fb4a6c6230370d001a3",
}


@pytest.fixture(scope="module")
def named_corpus():
    return make_corpus(CorpusConfig(size=6000, seed=3))


@pytest.mark.parametrize("seed", sorted(UNNAMED_DIGESTS))
def test_naming_probabilities_zero_give_back_the_world_before_captions_named_people(seed):
    config = CorpusConfig.unnamed(size=2000, seed=seed)
    assert not config.names_appearance()
    assert corpus_digest(make_corpus(config)) == UNNAMED_DIGESTS[seed]


def test_naming_leaves_images_and_people_as_they_were():
    named, unnamed = make_corpus(CorpusConfig(size=300)), make_corpus(CorpusConfig.unnamed(size=300))
    assert np.array_equal(named.images, unnamed.images)
    assert all(np.array_equal(named.labels[name], unnamed.labels[name]) for name in ATTRIBUTES)
    assert set(unnamed.labels["named"]) == {""}
    changed = [a != b for a, b in zip(named.captions, unnamed.captions)]
    assert np.array_equal(np.array(changed), named.labels["named"] != "")


def _names(caption: str, word: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", caption) is not None


def test_a_caption_names_the_persons_values_with_their_words_and_no_other_values(named_corpus):
    words = vocabulary.appearance_vocabulary()
    for index, caption in enumerate(named_corpus.captions):
        named = set(filter(None, named_corpus.labels["named"][index].split(",")))
        for attribute in ATTRIBUTES:
            value = named_corpus.labels[attribute][index]
            own = any(_names(caption, word) for word in words[attribute][value])
            others = [word for other, value_words in words[attribute].items() if other != value
                      for word in value_words if _names(caption, word)]  # fmt: skip
            assert own == (attribute in named), (caption, attribute)
            assert others == [], (caption, attribute)


def _named_rate(corpus, attribute: str, portrait: bool, marked: bool) -> tuple[float, int]:
    professions = [render.PROFESSIONS[index] for index in corpus.labels["concept"]]
    stereotyped = np.array([getattr(STEREOTYPES[name], attribute) for name in professions])
    chosen = ((corpus.labels[attribute] != stereotyped) == marked) & ((corpus.labels["setting"] == render.PLAIN) == portrait)
    named = np.array([attribute in names.split(",") for names in corpus.labels["named"]])
    return float(named[chosen].mean()), int(chosen.sum())


def test_anti_stereotypical_values_are_named_more_often_and_portraits_more_than_scenes(named_corpus):
    config = CorpusConfig()
    for attribute in ATTRIBUTES:
        rates = {}
        for portrait in (False, True):
            for marked in (False, True):
                rate, count = _named_rate(named_corpus, attribute, portrait, marked)
                expected = naming_probability(config, attribute, portrait, marked)
                assert rate == pytest.approx(expected, abs=4 * np.sqrt(expected * (1 - expected) / count) + 1e-9)
                rates[portrait, marked] = rate
        assert rates[False, True] > rates[False, False] and rates[True, True] > rates[True, False], attribute
        assert rates[True, False] > rates[False, False] and rates[True, True] > rates[False, True], attribute


def test_naming_positions_follow_their_probabilities():
    config = CorpusConfig(size=600, naming_position_probability={"before": 0.0, "apposition": 1.0, "after": 0.0})
    data = make_corpus(config)
    for caption, named, profession in zip(data.captions, data.labels["named"], data.labels["concept"]):
        if named:
            assert f", a {render.PROFESSIONS[profession]}" in caption


def test_the_shipped_tokenizer_knows_every_appearance_word():
    from cf_hf.world.pretrain import world_tokenizer

    tokenizer = world_tokenizer()
    unknown = tokenizer.convert_tokens_to_ids(tokenizer.unk_token)
    for values in vocabulary.appearance_vocabulary().values():
        for value_words in values.values():
            for word in value_words:
                for piece in word.replace("-", " ").split():
                    ids = tokenizer(piece, add_special_tokens=False)["input_ids"]
                    assert len(ids) == 1 and unknown not in ids, (word, piece, tokenizer.tokenize(piece))


def _words(**changes):
    words = {attribute: {value: list(value_words) for value, value_words in values.items()}
             for attribute, values in vocabulary.appearance_vocabulary().items()}  # fmt: skip
    for attribute, values in changes.items():
        words[attribute] = {**words.get(attribute, {}), **values}
    return words


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"portrait_naming_probability": {"gender": 1.5}}, r"portrait_naming_probability\['gender'\].*1\.5"),
        ({"scene_marked_naming_probability": {"age": -0.1}}, r"scene_marked_naming_probability\['age'\].*-0\.1"),
        ({"portrait_fraction": 2.0}, r"portrait_fraction.*2\.0"),
        ({"scene_naming_probability": {"race": 0.2}}, r"scene_naming_probability names attribute 'race'"),
        ({"stereotype_probability": {"height": 0.5}}, r"stereotype_probability names attribute 'height'"),
        ({"naming_position_probability": {"before": 0.5, "after": 0.2}}, r"naming_position_probability must sum to 1"),
        ({"naming_position_probability": {"middle": 1.0}}, r"naming_position_probability names position 'middle'"),
        ({"appearance_words": _words(gender={"female": []})}, r"appearance_words\['gender'\]\['female'\].*non-empty"),
        ({"appearance_words": _words(skin_tone={"dark": ["tan"]})},
         r"appearance_words\['skin_tone'\].*'tan' names both 'medium_light' and 'dark'"),
        ({"appearance_words": _words(race={"black": ["black"]})}, r"appearance_words names attribute 'race'"),
        ({"appearance_words": _words(age={"child": ["kid"]})}, r"appearance_words\['age'\] names value 'child'"),
    ],
)
def test_bad_corpus_settings_fail_before_anything_is_drawn(overrides, message, monkeypatch):
    from cf_hf.world import corpus

    monkeypatch.setattr(corpus, "render_scenes", lambda *args: pytest.fail("drew before checking"))
    with pytest.raises(ValueError, match=message):
        make_corpus(CorpusConfig(size=10, **overrides))


def test_a_bad_appearance_words_file_names_the_value(tmp_path):
    path = tmp_path / "words.yaml"
    text = vocabulary.APPEARANCE_WORDS_FILE.read_text(encoding="utf-8").replace("tan]", "pale]")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=r"words\.yaml: attributes\['skin_tone'\].*'pale' names both 'light' and 'medium_light'"):
        vocabulary.load_appearance_words(path)


def test_the_worlds_attribute_prompts_use_its_appearance_words_and_templates_for_every_value():
    from cf_hf.methods.attribute_prompts import load_attribute_prompts
    from cf_hf.world.demo.stages import WORLD_ATTRIBUTE_PROMPTS
    from cf_hf.world.pretrain import world_tokenizer

    words = vocabulary.appearance_vocabulary()
    tokenizer = world_tokenizer()
    unknown = tokenizer.convert_tokens_to_ids(tokenizer.unk_token)
    for attribute in ATTRIBUTES:
        prompts = load_attribute_prompts(attribute, WORLD_ATTRIBUTE_PROMPTS)
        assert sorted(prompts.values) == sorted(words[attribute])
        for value in prompts.values:
            assert prompts.words[value] in words[attribute][value]
            expected = [template.format(word=prompts.words[value]) for template in vocabulary.ATTRIBUTE_PROMPT_TEMPLATES]
            assert list(prompts.prototype_prompts[value]) == expected
            for text in [*expected, *prompts.augmented("a photo of a doctor", value)]:
                assert unknown not in tokenizer(text, add_special_tokens=False)["input_ids"], text
