"""The professions world: renderer, generation components, biased corpus and galleries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cf_hf.generation.interfaces import (
    CaptionWriter,
    Concept,
    ImageRequest,
    Inpainter,
    InpaintRequest,
    Segmenter,
    TextToImage,
)
from cf_hf.world import corpus, galleries, render
from cf_hf.world.components import (
    WorldCaptionWriter,
    WorldInpainter,
    WorldSegmenter,
    WorldTextToImage,
    find_person,
)
from cf_hf.world.palette import APPEARANCE_DISTANCE, CAMERA_NOISE, palette_margins

WORLD_DIR = Path(render.__file__).parent


def _scenes(count: int, seed: int = 0):
    """Scenes of every setting and framing, plain portraits included, with their profession."""
    rng = np.random.default_rng(seed)
    scenes = []
    for index in range(count):
        profession = render.PROFESSIONS[index % len(render.PROFESSIONS)]
        setting = render.PLAIN if index % 5 == 0 else render.PROFESSION_SETTINGS[profession]
        scenes.append(render.sample_scene(setting, render.sample_person(rng), rng, profession=profession))
    return scenes


def _request(concept: str, seed: int, **decorators) -> ImageRequest:
    return ImageRequest(
        concept=concept,
        caption=f"a {concept} at work",
        prompt=f"a {concept} at work",
        seed=seed,
        decorators=decorators,
    )


def test_components_implement_the_generation_interfaces():
    assert isinstance(WorldCaptionWriter(), CaptionWriter)
    assert isinstance(WorldTextToImage(), TextToImage)
    assert isinstance(WorldSegmenter(), Segmenter)
    assert isinstance(WorldInpainter(), Inpainter)


def test_text_to_image_is_deterministic_given_the_seed():
    text_to_image = WorldTextToImage()
    requests = [_request("nurse", 7, framing="close-up"), _request("chef", 8, lighting="dim light")]
    first = [np.asarray(image) for image in text_to_image(requests)]
    again = [np.asarray(image) for image in text_to_image(requests)]
    other = np.asarray(text_to_image([_request("nurse", 9, framing="close-up")])[0])
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], other)
    assert first[0].shape == (render.DEFAULT_IMAGE_SIZE, render.DEFAULT_IMAGE_SIZE, 3)


def test_text_to_image_reads_the_decorators():
    scene = WorldTextToImage().scene(
        _request("teacher", 3, framing="close-up", lighting="bright light", style="x")
    )
    assert (scene.framing, scene.lighting, scene.setting) == ("close-up", "bright light", "school")


def test_text_to_image_rejects_an_unknown_concept():
    with pytest.raises(ValueError, match="cannot draw 'astronaut'"):
        WorldTextToImage()([_request("astronaut", 0)])


def test_context_colors_stay_clear_of_the_person_colors():
    # A context pixel with 4 standard deviations of the grainiest camera noise must still be
    # farther than the classifier's threshold from every skin and hair color.
    worst_noise = 4 * max(CAMERA_NOISE.values())
    assert min(palette_margins().values()) > APPEARANCE_DISTANCE + worst_noise


def test_segmenter_matches_the_renderer_ground_truth():
    segmenter = WorldSegmenter(envelope=False)
    ious = []
    for scene in _scenes(120):
        image, labels = render.render(scene)
        truth = np.isin(labels, render.APPEARANCE_LABELS)
        mask = segmenter([Image.fromarray(image)])[0]
        ious.append((mask & truth).sum() / (mask | truth).sum())
    assert np.mean(ious) > 0.995
    assert np.min(ious) > 0.95


def test_segmenter_mask_never_covers_attire_outside_the_head_envelope():
    segmenter = WorldSegmenter(envelope=False)
    for scene in _scenes(40, seed=1):
        image, labels = render.render(scene)
        mask = segmenter([Image.fromarray(image)])[0]
        assert not (mask & (labels == render.ATTIRE)).any()


def test_segmenter_envelope_holds_every_hair_style_of_the_same_scene():
    segmenter = WorldSegmenter()
    for scene in _scenes(60, seed=2):
        image, _ = render.render(scene)
        mask = segmenter([Image.fromarray(image)])[0]
        for gender in render.GENDERS:
            _, labels = render.render(scene.with_person(render.Person(gender, "dark", "elderly")))
            head = np.isin(labels, (render.HAIR, render.FACE))
            assert (head & ~mask).sum() <= 1


def test_find_person_reads_the_attributes_from_the_pixels():
    for scene in _scenes(60, seed=3):
        image, _ = render.render(scene)
        assert find_person(image).attributes == scene.person.as_dict()


def test_inpainter_leaves_every_context_pixel_untouched():
    segmenter, inpainter = WorldSegmenter(), WorldInpainter()
    rng = np.random.default_rng(4)
    for index, scene in enumerate(_scenes(60, seed=4)):
        image = Image.fromarray(render.render(scene)[0])
        mask = segmenter([image])[0]
        target = render.sample_person(rng).as_dict()
        request = InpaintRequest(image, mask.astype(np.float32), target, "", "", "doctor", index)
        painted = np.asarray(inpainter([request])[0])
        assert np.array_equal(painted[~mask], np.asarray(image)[~mask])


def test_inpainter_paints_the_requested_appearance():
    segmenter, inpainter = WorldSegmenter(), WorldInpainter()
    rng = np.random.default_rng(5)
    matches = []
    for index, scene in enumerate(_scenes(80, seed=5)):
        image = Image.fromarray(render.render(scene)[0])
        mask = segmenter([image])[0]
        target = render.sample_person(rng).as_dict()
        painted = inpainter.inpaint(
            InpaintRequest(image, mask.astype(np.float32), target, "", "", "nurse", index)
        )
        matches.append(find_person(painted).attributes == target)
    assert np.mean(matches) >= 0.97


def test_inpainter_rejects_attributes_the_world_cannot_draw():
    image = Image.fromarray(render.render(_scenes(1)[0])[0])
    mask = WorldSegmenter()([image])[0].astype(np.float32)
    with pytest.raises(ValueError, match="unknown attributes"):
        WorldInpainter()([InpaintRequest(image, mask, {"race": "Black"}, "", "", "doctor", 0)])


def test_caption_writer_names_the_profession_and_never_the_person():
    from cf_hf.concepts import load_appearance_words

    words = load_appearance_words()
    captions = WorldCaptionWriter()(Concept("police officer", "police officers"), 12, seed=0)
    assert len(captions) == 12 and all("police officer" in caption for caption in captions)
    for caption in captions:
        assert not any(words.category_of(word) for word in caption.lower().split())


def test_world_data_files_load_with_the_concept_loaders():
    from cf_hf.concepts import load_attribute_grid, load_concepts, load_decorators

    grid = load_attribute_grid(WORLD_DIR / "attribute_grid.yaml")
    values = {attribute.name: attribute.values for attribute in grid.attributes}
    assert values == {"gender": render.GENDERS, "skin_tone": render.SKIN_TONE_NAMES, "age": render.AGES}
    assert [concept.name for concept in load_concepts(WORLD_DIR / "professions.yaml")] == list(
        render.PROFESSIONS
    )
    decorators = load_decorators(WORLD_DIR / "decorators.yaml")
    assert set(decorators["framing"]) == set(render.FRAMINGS)
    assert decorators["framing"].count(render.CLOSE_UP) / len(decorators["framing"]) == pytest.approx(0.2)


def test_corpus_follows_the_configured_correlations():
    config = corpus.CorpusConfig(
        size=4000, stereotype_probability={"gender": 0.85, "skin_tone": 0.6, "age": 0.5}, seed=1
    )
    data = corpus.make_corpus(config)
    professions = [render.PROFESSIONS[index] for index in data.labels["concept"]]
    for attribute, probability in config.stereotype_probability.items():
        stereotyped = np.mean(
            [
                getattr(corpus.STEREOTYPES[name], attribute) == value
                for name, value in zip(professions, data.labels[attribute])
            ]
        )
        assert stereotyped == pytest.approx(probability, abs=0.025), attribute
    assert np.mean(data.labels["setting"] == render.PLAIN) == pytest.approx(
        config.portrait_fraction, abs=0.02
    )
    in_context = data.labels["setting"] != render.PLAIN
    assert data.labels["has_prop"][in_context].mean() == pytest.approx(config.prop_probability, abs=0.03)
    assert all(name in caption for name, caption in zip(professions, data.captions))


def test_stereotypes_differ_between_professions_and_within_each_setting():
    pairs = {(person.gender, person.skin_tone) for person in corpus.STEREOTYPES.values()}
    assert len(pairs) == len(render.PROFESSIONS)
    for setting in render.SETTINGS:
        first, second = [
            corpus.STEREOTYPES[name] for name, where in render.PROFESSION_SETTINGS.items() if where == setting
        ]
        assert all(getattr(first, name) != getattr(second, name) for name in corpus.ATTRIBUTES)


def test_fairface_gallery_is_balanced_on_the_plain_backdrop():
    gallery = galleries.fairface(per_cell=3)
    assert len(gallery) == 3 * 16
    assert set(gallery.labels["setting"]) == {render.PLAIN}
    cells = {
        tuple(gallery.labels[name][index] for name in corpus.ATTRIBUTES) for index in range(len(gallery))
    }
    assert len(cells) == 16


def test_flickr_gallery_has_distinct_captions_per_image():
    gallery = galleries.flickr(n_images=10, captions_per_image=5)
    assert len(gallery) == 10
    assert all(len(set(captions)) == 5 for captions in gallery.captions)


def test_shipped_tokenizer_has_every_word_of_the_world_as_one_token():
    """Pretraining uses the shipped tokenizer (BPE training is not reproducible run to run); it must
    still know every word the world writes — regenerate it with `python -m cf_hf.world.pretrain`."""
    from cf_hf.world import vocabulary
    from cf_hf.world.corpus import CorpusConfig, make_corpus
    from cf_hf.world.pretrain import world_tokenizer

    tokenizer = world_tokenizer()
    texts = vocabulary.vocabulary_texts() + list(make_corpus(CorpusConfig(size=300, seed=5)).captions)
    words = {word for text in texts for word in text.lower().replace(",", " ").replace("-", " ").split()}
    split = {word: tokenizer.tokenize(word) for word in sorted(words)}
    assert {word: tokens for word, tokens in split.items() if len(tokens) != 1} == {}


def test_pretraining_builds_the_same_model_twice():
    import torch

    from cf_hf.world.corpus import CorpusConfig, make_corpus
    from cf_hf.world.pretrain import PretrainConfig, pretrain_original_clip

    corpus = make_corpus(CorpusConfig(size=64))
    config = PretrainConfig(steps=2, batch_size=16, warmup_steps=1)
    first, _, _ = pretrain_original_clip(corpus, config, log=None)
    second, _, _ = pretrain_original_clip(corpus, config, log=None)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
