"""Each generation stage on its own, on tiny models of the default classes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from testing_utils.generation import (
    ATR_LABELS,
    IMAGE_SIZE,
    build_tiny_segformer,
    one_torch_thread,  # noqa: F401 (a fixture, used by name below)
    tiny_components,
    tiny_components_dir,
)

from cf_hf.concepts import load_concepts
from cf_hf.generation.base_images import DiffusersTextToImage, decorated_prompt, draw_decorators
from cf_hf.generation.captions import CaptionValidator, LLMCaptionWriter, TemplateCaptionWriter
from cf_hf.generation.inpainting import DiffusersInpainter
from cf_hf.generation.interfaces import ImageRequest, InpaintRequest
from cf_hf.generation.masks import (
    REJECT_NO_PERSON,
    REJECT_TOO_LARGE,
    REJECT_TOO_SMALL,
    MaskPostprocessing,
    SegformerSegmenter,
    resolve_label_ids,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DOCTOR = load_concepts(names=["doctor"])[0]


@pytest.fixture(scope="module")
def tiny_root():
    return tiny_components_dir()


@pytest.fixture(scope="module")
def components(tiny_root):
    return tiny_components(tiny_root)


@pytest.fixture(scope="module")
def base_images(components):
    requests = [ImageRequest("doctor", "A doctor works.", f"A doctor works, scene {i}", seed=i) for i in range(2)]
    return components["text_to_image"](requests)


# -- captions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caption", "reason"),
    [
        ("A young doctor reviews an X-ray in a corridor.", "appearance word (age)"),
        ("A doctor reviews her notes in a corridor.", "appearance word (gender)"),
        ("An Asian doctor reviews an X-ray in a corridor.", "appearance word (race)"),
        ("A bearded doctor reviews an X-ray in a corridor.", "appearance word (body)"),
        ("A nurse reviews an X-ray in a corridor.", "concept missing"),
        ("doctor corridor", "not a sentence"),
    ],
)

def test_validator_rejects(caption, reason):
    assert reason in CaptionValidator.default().problems(caption, DOCTOR)


def test_validator_accepts_a_neutral_caption():
    assert CaptionValidator.default()("A doctor reviews an X-ray in a bright hospital corridor.", DOCTOR)


class ScriptedChatPipeline:
    """Stands in for a text-generation pipeline: answers from a script, one list per call."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = 0

    def __call__(self, messages, num_return_sequences, **_):
        self.calls += 1
        batch = self.answers.pop(0)
        return [{"generated_text": [*messages, {"role": "assistant", "content": text}]} for text in batch][:num_return_sequences]


def test_llm_writer_retries_rejected_captions():
    pipeline = ScriptedChatPipeline(
        [
            ['"A doctor talks with a patient in a clinic."', "A woman doctor reads a chart."],
            ["1. A doctor reviews an X-ray in a hospital corridor."],
        ]
    )
    writer = LLMCaptionWriter(pipeline=pipeline)
    captions = writer(DOCTOR, 2, seed=0)
    assert captions == ["A doctor talks with a patient in a clinic.", "A doctor reviews an X-ray in a hospital corridor."]
    assert pipeline.calls == 2
    assert writer.rejections["appearance word (gender)"] == 1


def test_llm_writer_falls_back_to_templates():
    writer = LLMCaptionWriter(pipeline=ScriptedChatPipeline([["He is old."]] * 3), max_attempts=3)
    captions = writer(DOCTOR, 3, seed=0)
    assert captions == TemplateCaptionWriter()(DOCTOR, 3, seed=0)


def test_tiny_llama_captions_are_valid_and_deterministic(tiny_root):
    writer = LLMCaptionWriter(str(tiny_root / "causal_lm"), max_new_tokens=12)
    first, second = writer(DOCTOR, 3, seed=1), writer(DOCTOR, 3, seed=1)
    assert first == second and len(first) == 3
    assert all(CaptionValidator.default()(caption, DOCTOR) for caption in first)
    assert sum(writer.rejections.values()) > 0  # the random model's garbage was seen and refused


def test_template_writer_is_deterministic_and_seeded():
    writer = TemplateCaptionWriter()
    assert writer(DOCTOR, 5, seed=3) == writer(DOCTOR, 5, seed=3)
    assert writer(DOCTOR, 5, seed=3) != writer(DOCTOR, 5, seed=4)
    assert len(set(writer(DOCTOR, 20, seed=0))) == 20


# -- base images ------------------------------------------------------------------------------


def test_decorators_are_drawn_by_seed_and_appended():
    table = {"lighting": ["soft light", "hard light"], "framing": ["wide shot", "close-up"]}
    drawn = draw_decorators(table, seed=7)
    assert drawn == draw_decorators(table, seed=7) and set(drawn) == set(table)
    assert decorated_prompt("A doctor works.", drawn) == "A doctor works, " + ", ".join(drawn.values())


def test_text_to_image_is_batched_and_seeded_per_sample(components, base_images):
    assert [image.size for image in base_images] == [(IMAGE_SIZE, IMAGE_SIZE)] * 2
    # Alone or in a batch, a request with the same seed gives the same image.
    alone = components["text_to_image"]([ImageRequest("doctor", "A doctor works.", "A doctor works, scene 1", seed=1)])[0]
    assert np.abs(np.asarray(alone, dtype=int) - np.asarray(base_images[1], dtype=int)).max() <= 1


def test_components_load_lazily(tiny_root):
    fresh = tiny_components(tiny_root)
    assert fresh["text_to_image"]._pipeline is None and fresh["inpainter"]._pipeline is None
    assert fresh["segmenter"]._model is None


# -- masks ------------------------------------------------------------------------------------


def test_labels_resolve_by_name_with_plurals():
    id2label = dict(enumerate(ATR_LABELS))
    ids = resolve_label_ids(id2label, ["Hair", "Face", "arms", "legs"])
    assert sorted(id2label[i] for i in ids) == ["Face", "Hair", "Left-arm", "Left-leg", "Right-arm", "Right-leg"]


def test_segmenter_resolves_labels_from_the_model(components, tiny_root, base_images):
    assert sorted(ATR_LABELS[i] for i in components["segmenter"].label_ids) == [
        "Face", "Hair", "Left-arm", "Left-leg", "Right-arm", "Right-leg",
    ]  # fmt: skip
    with_clothes = SegformerSegmenter(str(tiny_root / "segformer"), include_clothing=True)
    assert "Upper-clothes" in {ATR_LABELS[i] for i in with_clothes.label_ids}
    masks = components["segmenter"](base_images)
    assert [mask.shape for mask in masks] == [(IMAGE_SIZE, IMAGE_SIZE)] * 2 and masks[0].dtype == bool


def test_a_mask_model_without_person_labels_is_refused(tmp_path, base_images):
    path = build_tiny_segformer(tmp_path / "cars", labels=["background", "car", "road", "tree"])
    with pytest.raises(ValueError, match="does not look like a human-parsing model"):
        SegformerSegmenter(str(path))(base_images)


def test_mask_postprocessing_rejects_by_reason():
    post = MaskPostprocessing(min_area=0.05, max_area=0.5)
    empty = np.zeros((64, 64), bool)
    tiny = empty.copy()
    tiny[:4, :4] = True
    huge = ~empty
    assert post(empty).rejection == REJECT_NO_PERSON
    assert post(tiny).rejection == REJECT_TOO_SMALL
    assert post(huge).rejection == REJECT_TOO_LARGE


def test_mask_postprocessing_dilates_and_feathers():
    mask = np.zeros((64, 64), bool)
    mask[20:40, 20:40] = True
    result = MaskPostprocessing(dilation=0.05, feather=0.03, min_area=0.01)(mask)
    assert result.rejection is None and result.area == pytest.approx(400 / 4096)
    assert (result.mask[mask] == 1.0).all()  # the person stays fully repainted
    assert (result.mask > 0).sum() > mask.sum()  # and the edge grew
    assert 0 < result.mask[18, 30] < 1 or result.mask[17, 30] < 1  # a soft edge
    assert result.mask[0, 0] == 0.0


# -- inpainting -------------------------------------------------------------------------------


def _inpaint_request(image, mask, seed=0):
    return InpaintRequest(image=image, mask=mask, appearance={"gender": "female"}, prompt="a woman doctor",
                          caption="A doctor works.", concept="doctor", seed=seed)  # fmt: skip


def test_inpainting_changes_only_the_mask(components, base_images):
    mask = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    mask[16:48, 16:48] = 1.0
    painted = components["inpainter"]([_inpaint_request(base_images[0], mask)])[0]
    before, after = np.asarray(base_images[0]), np.asarray(painted)
    assert painted.size == base_images[0].size
    assert (before[mask == 0] == after[mask == 0]).all()
    assert (before[mask == 1] != after[mask == 1]).any()


def test_fast_inpainting_reuses_the_text_to_image_pipeline(tiny_root, base_images):
    text_to_image = DiffusersTextToImage(str(tiny_root / "text_to_image"), height=IMAGE_SIZE, width=IMAGE_SIZE)
    fast = DiffusersInpainter.from_text_to_image(text_to_image, num_inference_steps=2)
    mask = np.ones((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    assert fast([_inpaint_request(base_images[0], mask)])[0].size == (IMAGE_SIZE, IMAGE_SIZE)
    assert fast.pipeline.unet is text_to_image.pipeline.unet
    assert type(fast.pipeline).__name__ == "StableDiffusionXLInpaintPipeline"


def test_a_text_to_image_pipeline_is_refused_as_inpainter(components):
    with pytest.raises(TypeError, match="is not an inpainting pipeline"):
        DiffusersInpainter(pipeline=components["text_to_image"].pipeline)


def test_one_step_below_full_strength_is_refused():
    with pytest.raises(ValueError, match="use strength=1.0 or at least 2 steps"):
        DiffusersInpainter(num_inference_steps=1, strength=0.99)
    DiffusersInpainter(num_inference_steps=1, strength=1.0)  # fine (and loads nothing)


def test_images_of_different_sizes_are_painted_separately(components, base_images):
    small = base_images[1].resize((32, 32))
    requests = [
        _inpaint_request(base_images[0], np.ones((IMAGE_SIZE, IMAGE_SIZE), np.float32)),
        _inpaint_request(small, np.ones((32, 32), np.float32)),
    ]
    sizes = [image.size for image in components["inpainter"](requests)]
    assert sizes == [(IMAGE_SIZE, IMAGE_SIZE), (32, 32)]


def test_image_helpers_accept_plain_pil_input(components):
    gray = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (128, 128, 128))
    assert components["segmenter"]([gray])[0].shape == (IMAGE_SIZE, IMAGE_SIZE)
