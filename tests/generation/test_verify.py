"""Verified counterfactuals: each score on hand-made images, the world's failure model, the rejected
split against planted failures, and `cf-hf verify` on the demo's real export."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cf_hf.concepts import load_attribute_grid
from cf_hf.generation.interfaces import ImageRequest, InpaintRequest, component_provenance
from cf_hf.generation.verification import (
    FAIL_CONTEXT_DIFFERENCE,
    FAIL_CONTEXT_SSIM,
    FAIL_DUPLICATE,
    FAIL_PERSON_MISSING,
    Group,
    PixelEmbedder,
    VerificationConfig,
    VerificationError,
    Verifier,
    context_scores,
    score_groups,
    verdict,
    verify_dataset,
)
from cf_hf.world.components import (
    FailureRule,
    InpaintingFailures,
    WorldAttributeReader,
    WorldInpainter,
    WorldSegmenter,
    WorldTextToImage,
)
from cf_hf.world.demo.stages import WORLD_DIR

GRID = load_attribute_grid(WORLD_DIR / "attribute_grid.yaml")
APPEARANCE = {"gender": "female", "skin_tone": "dark", "age": "elderly"}


def _base_image(seed: int = 3) -> Image.Image:
    request = ImageRequest(concept="doctor", caption="a doctor in the hospital", prompt="", seed=seed,
                           decorators={"framing": "close-up"})  # fmt: skip
    return WorldTextToImage(image_size=48)([request])[0]


def _edit(base: Image.Image, appearance: dict, inpainter=None, seed: int = 7) -> Image.Image:
    mask = WorldSegmenter()([base])[0]
    request = InpaintRequest(image=base, mask=mask.astype(np.float32), appearance=appearance, prompt="",
                             caption="", concept="doctor", seed=seed)  # fmt: skip
    return (inpainter or WorldInpainter())([request])[0]


def _scores(base, images, requested):
    (rows,), skipped = score_groups([Group("doctor", base, images, requested)], grid=GRID, config=VerificationConfig(),
                                    classifier=WorldAttributeReader(), embedder=PixelEmbedder(), segmenter=WorldSegmenter())  # fmt: skip
    return rows, skipped


def _other_appearance(base) -> dict:
    from cf_hf.world.components import find_person

    found = find_person(np.asarray(base)).attributes
    return {name: next(v for v in values if v != found[name]) for name, values in WorldAttributeReader.VALUES.items()}


def test_a_correct_edit_passes_every_check():
    base = _base_image()
    wanted = _other_appearance(base)
    rows, skipped = _scores(base, [_edit(base, wanted)], [wanted])
    assert skipped == set()
    assert verdict(rows[0], GRID.names, VerificationConfig()) == []
    assert rows[0]["verify_context_difference"] == 0.0 and rows[0]["verify_context_ssim"] == pytest.approx(1.0)


def test_a_copied_person_is_caught():
    base = _base_image()
    wanted = _other_appearance(base)
    rows, _ = _scores(base, [base.copy()], [wanted])
    failures = verdict(rows[0], GRID.names, VerificationConfig())
    assert FAIL_DUPLICATE in failures and "adherence_skin_tone" in failures
    assert rows[0]["verify_kept_base_skin_tone"] is True


def test_a_changed_background_is_caught():
    base = _base_image()
    wanted = _other_appearance(base)
    edited = np.asarray(_edit(base, wanted)).astype(np.int16)
    edited[: edited.shape[0] // 3] = 255 - edited[: edited.shape[0] // 3]  # the top of the scene repainted
    rows, _ = _scores(base, [Image.fromarray(edited.clip(0, 255).astype(np.uint8))], [wanted])
    failures = verdict(rows[0], GRID.names, VerificationConfig())
    assert FAIL_CONTEXT_DIFFERENCE in failures and FAIL_CONTEXT_SSIM in failures


def test_a_vanished_person_is_caught():
    base = _base_image()
    wanted = _other_appearance(base)
    mask = WorldSegmenter()([base])[0]
    erased = np.asarray(base).copy()
    erased[mask] = np.asarray(base)[0, 0]  # the person painted over with a background color
    rows, _ = _scores(base, [Image.fromarray(erased)], [wanted])
    assert FAIL_PERSON_MISSING in verdict(rows[0], GRID.names, VerificationConfig())


def test_context_scores_ignore_the_person_region():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
    changed = base.copy()
    changed[8:16, 8:16] = 0
    person = np.zeros((24, 24), dtype=bool)
    person[8:16, 8:16] = True
    assert context_scores(base, changed, person) == (0.0, pytest.approx(1.0))
    difference, similarity = context_scores(base, changed, None)
    assert difference > 0.05 and similarity < 0.9


def test_failure_model_is_off_by_default():
    inpainter = WorldInpainter()
    assert inpainter.failures is None
    # The run fingerprint (the class alone, as before failures existed) and the images are unchanged.
    assert component_provenance(inpainter) == {"class": "cf_hf.world.components.WorldInpainter"}
    base = _base_image()
    never = InpaintingFailures(rules=(FailureRule("copy", 1.0, when={"skin_tone": "no such tone"}),))
    default, with_model = _edit(base, APPEARANCE), _edit(base, APPEARANCE, WorldInpainter(never))
    assert np.array_equal(np.asarray(default), np.asarray(with_model))


def test_failure_model_plants_its_failures():
    base = _base_image()
    copy = _edit(base, APPEARANCE, WorldInpainter(InpaintingFailures((FailureRule("copy", 1.0),))))
    assert np.array_equal(np.asarray(copy), np.asarray(base))
    wrong = _edit(base, APPEARANCE, WorldInpainter(InpaintingFailures((FailureRule("wrong_skin_tone", 1.0),))))
    probabilities = WorldAttributeReader()([wrong], ["doctor"])
    assert probabilities["skin_tone"][0, list(WorldAttributeReader.VALUES["skin_tone"]).index("dark")] == 0.0


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    """A real world run with planted failures (generation through the demo's own config), and its failure model."""
    from cf_hf.generation import generate
    from cf_hf.world.components import WorldCaptionWriter
    from cf_hf.world.demo.config import DemoConfig
    from cf_hf.world.demo.stages import generation_config

    failures = InpaintingFailures((FailureRule("copy", 0.15), FailureRule("wrong_skin_tone", 0.5, {"skin_tone": "dark"})))
    run_dir = tmp_path_factory.mktemp("planted") / "run"
    config = generation_config(DemoConfig(captions_per_concept=1, decorators_per_caption=2), seed=0)
    generate(config, caption_writer=WorldCaptionWriter(), text_to_image=WorldTextToImage(), segmenter=WorldSegmenter(),
             inpainter=WorldInpainter(failures), output_dir=run_dir, show_progress=False)  # fmt: skip
    return run_dir, failures


def _world_verifier(**config):
    return Verifier(GRID, WorldAttributeReader(), PixelEmbedder(), WorldSegmenter(), VerificationConfig(**config), False)


def test_export_with_verifier_rejects_the_planted_failures(planted_run, tmp_path):
    import datasets

    from dataset_builder import export_dataset

    run_dir, failures = planted_run
    output = export_dataset(run_dir, tmp_path / "dataset", test_size=0.0, verifier=_world_verifier())
    loaded = datasets.load_dataset(str(output))
    assert set(loaded) == {"train", "rejected"}
    reader = WorldAttributeReader()
    for split in ("train", "rejected"):
        rows = loaded[split]
        for row in rows:
            if row["is_base"]:
                assert row["verify_passed"] and row["verify_context_ssim"] is None
                continue
            appearance = {name: rows.features[name].int2str(row[name]) for name in GRID.names}
            planted = failures.planted(appearance, row["seed"])
            if split == "train":  # a kept copy is one whose base already looked as asked
                assert planted is None or all(reader([row["image"]], ["x"])[n][0].argmax() == rows.features[n].str2int(appearance[n]) for n in GRID.names)
            else:
                assert planted is not None and row["verify_failures"]
    card = (output / "README.md").read_text()
    assert "## Verification" in card and "| skin_tone | dark |" in card and (output / "verification.png").is_file()


def test_verification_resumes_finished_chunks(planted_run, tmp_path):
    from dataset_builder.builder import CounterfactualDataset

    run_dir, _ = planted_run
    builder = CounterfactualDataset(run_dir=str(run_dir), test_size=0.0, cache_dir=str(tmp_path / "cache"))
    builder.download_and_prepare()
    train = builder.as_dataset()["train"]
    options = dict(grid=GRID, config=VerificationConfig(chunk_groups=4), classifier=WorldAttributeReader(),
                   embedder=PixelEmbedder(), segmenter=WorldSegmenter(), cache_dir=tmp_path / "scores", show_progress=False)  # fmt: skip
    first, report = verify_dataset(train, **options)
    again, resumed = verify_dataset(train, **options)
    assert report.chunks_scored == resumed.chunks_resumed == 4 and resumed.chunks_scored == 0
    assert first == again


def test_without_base_references_the_other_checks_run_and_skips_are_named(planted_run, tmp_path):
    from dataset_builder.builder import CounterfactualDataset

    run_dir, _ = planted_run
    builder = CounterfactualDataset(run_dir=str(run_dir), test_size=0.0, cache_dir=str(tmp_path / "cache"))
    builder.download_and_prepare()
    splits = builder.as_dataset()
    splits = splits.remove_columns(["group_id", "is_base"])
    verified, summary = _world_verifier()(splits)
    assert summary.skipped == ["context", "duplicates", "person"]
    assert summary.counterfactuals == 128  # base rows (no requested values) are not scored
    assert verified["train"][0]["verify_context_ssim"] is None
    assert "adherence_skin_tone" in summary.failures


def test_an_attribute_value_without_a_prompt_is_a_clear_error(planted_run, tmp_path):
    from dataset_builder.builder import CounterfactualDataset

    run_dir, _ = planted_run
    builder = CounterfactualDataset(run_dir=str(run_dir), test_size=0.0, cache_dir=str(tmp_path / "cache"))
    builder.download_and_prepare()
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text((WORLD_DIR / "attribute_grid.yaml").read_text().replace(", dark]", "]").replace(", dark: dark-skinned", ""))
    with pytest.raises(VerificationError, match=r"column 'skin_tone': value 'dark' has no prompt"):
        verify_dataset(builder.as_dataset()["train"], grid=load_attribute_grid(grid_file),
                       classifier=WorldAttributeReader(), show_progress=False)  # fmt: skip


def test_cli_verify_on_the_demos_dataset(tmp_path, capsys):
    """`cf-hf verify` end to end on the demo's own export (world components, no failures planted)."""
    import datasets

    from cf_hf.cli import main
    from cf_hf.world.demo.config import DemoConfig
    from cf_hf.world.demo.stages import make_counterfactual_dataset

    config = DemoConfig(captions_per_concept=1, decorators_per_caption=1, appearances_per_base=4)
    make_counterfactual_dataset(config, 0, tmp_path / "run", tmp_path / "dataset", quiet=True)
    assert main(["verify", str(tmp_path / "dataset"), "--world", "--output_dir", str(tmp_path / "verified"), "--no_progress"]) == 0
    verified = datasets.load_dataset(str(tmp_path / "verified"))
    # No failure is planted: the world's CLIP judges age (and may miss a few), the stand-in the rest.
    rejected = verified["rejected"]["verify_failures"] if "rejected" in verified else []
    assert set(rejected) <= {"adherence_age"} and len(rejected) <= 4
    assert f"{32 - len(rejected)}/32 counterfactuals passed" in capsys.readouterr().out
    # A folder the command did not write is refused in one line.
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert main(["verify", str(tmp_path / "dataset"), "--world", "--output_dir", str(tmp_path / "other")]) == 2
    assert "notes.txt" in capsys.readouterr().err


def test_cli_verify_with_a_clip_classifier_and_no_segmenter(tmp_path, tiny_clip_dir, capsys):
    """The real-run path: zero-shot CLIP adherence (a tiny random CLIP) on a run folder; without a
    segmenter the context and person checks are named as skipped in the card."""
    import datasets

    from cf_hf.cli import main
    from cf_hf.world.demo.config import DemoConfig
    from cf_hf.world.demo.stages import make_counterfactual_dataset

    config = DemoConfig(captions_per_concept=1, decorators_per_caption=1, appearances_per_base=2)
    make_counterfactual_dataset(config, 0, tmp_path / "run", tmp_path / "dataset", quiet=True)
    code = main(["verify", str(tmp_path / "run"), "--classifier_model", str(tiny_clip_dir), "--segmentation_model", "none",
                 "--output_dir", str(tmp_path / "verified"), "--test_size", "0", "--no_progress", "--min_adherence", "0"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    verified = datasets.load_dataset(str(tmp_path / "verified"))
    scores = [s for split in verified.values() for s in split["verify_adherence_gender"] if s is not None]
    assert len(scores) == 16 and all(0.0 < s < 1.0 for s in scores)
    assert "Checks skipped (inputs missing): context, person." in (tmp_path / "verified" / "README.md").read_text()


def test_generate_with_verify_exports_verified_splits(tmp_path, tiny_clip_dir, capfd, progress_bars_restored):
    """`cf-hf generate --verify` on the default component classes (tiny SDXL, SegFormer, CLIP)."""
    import datasets
    import torch
    from testing_utils.generation import tiny_cli_args, tiny_components_dir, write_tiny_grid

    from cf_hf.cli import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny models are 20-40x slower with two threads on a busy machine
    try:
        grid = write_tiny_grid(tmp_path / "grid.yaml")
        args = tiny_cli_args(tiny_components_dir(), tmp_path / "run", grid, "--fast_inpainting", "--template_captions",
                             "--test_size", "0", "--verify", "--verify_classifier_model", str(tiny_clip_dir))  # fmt: skip
        assert main(args) == 0, capfd.readouterr().err
    finally:
        torch.set_num_threads(threads)
    dataset = datasets.load_dataset(str(tmp_path / "run" / "dataset"))
    rows = sum(len(split) for split in dataset.values())
    scored = [s for split in dataset.values() for s in split["verify_context_ssim"] if s is not None]
    assert rows == 8 + 16 and len(scored) == 16
    assert "## Verification" in (tmp_path / "run" / "dataset" / "README.md").read_text()


def test_exporting_again_resumes_the_stored_scores(planted_run, tmp_path):
    from dataset_builder import export_dataset

    run_dir, _ = planted_run
    first = _world_verifier(chunk_groups=8)
    export_dataset(run_dir, tmp_path / "a", test_size=0.25, verifier=first)
    again = _world_verifier(chunk_groups=8)
    export_dataset(run_dir, tmp_path / "b", test_size=0.25, verifier=again)
    assert {split: r.chunks_resumed for split, r in again.reports.items()} == {split: r.chunks_scored for split, r in first.reports.items()}
    assert all(report.chunks_scored == 0 for report in again.reports.values())
    assert (tmp_path / "a" / "README.md").read_text().split("## Verification")[1] == (tmp_path / "b" / "README.md").read_text().split("## Verification")[1]


def test_zero_shot_prompts_are_grammatical_with_a_head_noun_and_no_inpainting_suffix():
    from cf_hf.generation.verification.classifier import attribute_prompts

    grid = load_attribute_grid()
    race = attribute_prompts(grid, "race", "doctor")
    assert race[grid.attributes[1].values.index("White")] == ["a photo of a White person working as a doctor"]
    assert ["a photo of an East Asian person working as a doctor"] in race
    assert attribute_prompts(grid, "gender", "nurse") == [["a photo of a woman working as a nurse"],
                                                          ["a photo of a man working as a nurse"]]
    assert ["a photo of an elderly person working as a chef"] in attribute_prompts(grid, "age", "chef")
    every = [prompt for name in grid.names for prompts in attribute_prompts(grid, name, "doctor") for prompt in prompts]
    assert not any("natural skin" in prompt or "detailed face" in prompt or " a E" in prompt for prompt in every)


def test_zero_shot_prompts_come_from_a_data_file(tmp_path):
    from cf_hf.generation.verification.prompts import load_zero_shot_prompts

    grid = load_attribute_grid()
    custom = tmp_path / "prompts.yaml"
    custom.write_text("format: cf_hf-zero-shot-prompts\nattributes:\n  gender:\n"
                      "    templates: ['a {value} {concept}', 'a portrait of a {value}']\n"
                      "    words: {female: [woman, lady], male: man}\n")
    with pytest.raises(VerificationError, match="no templates for attribute 'race'"):
        load_zero_shot_prompts(grid, custom)
    custom.write_text(custom.read_text() + "default_template: 'a {value} person'\n")
    prompts = load_zero_shot_prompts(grid, custom)
    assert prompts.prompts("gender", "female", "doctor") == ["a woman doctor", "a lady doctor", "a portrait of a woman",
                                                            "a portrait of a lady"]
    assert prompts.source == "prompts.yaml"
    assert prompts.prompts("race", "East_Asian", "doctor") == ["an East Asian person"]


def test_a_tall_person_crop_is_padded_square_so_no_centre_crop_cuts_the_head():
    from cf_hf.generation.verification.scores import square_person_crop

    image = Image.new("RGB", (40, 100), (10, 20, 30))
    image.paste((200, 0, 0), (15, 0, 25, 100))  # a tall person spanning the whole height
    crop = square_person_crop(image, (15, 0, 25, 100))
    assert crop.size == (100, 100)
    pixels = np.asarray(crop)
    # The whole person is kept (all 100 rows), centred, with the image's own pixels beside it where
    # it has them (40 wide), and the crop's mean colour beyond.
    assert (pixels[:, 45:55] == (200, 0, 0)).all()
    assert (pixels[50, 30:45] == (10, 20, 30)).all()
    assert pixels[50, 0].tolist() == np.asarray(image, dtype=float).reshape(-1, 3).mean(0).round().astype(int).tolist()
    wide = square_person_crop(Image.new("RGB", (100, 100)), (0, 40, 60, 60))
    assert wide.size == (60, 60)  # grown inside the image: no padding needed


def test_the_verifier_masks_what_the_generation_repainted():
    from cf_hf.cli.verify import VerifyArguments, build_verifier, verification_segmenter
    from cf_hf.generation.masks import APPEARANCE_LABELS, CLOTHING_LABELS, SegformerSegmenter

    generation = SegformerSegmenter("some/segformer", labels=["Hair", "Face"], include_clothing=True)
    recorded = generation.provenance
    args = VerifyArguments(run_or_dataset="run", quiet=True)
    verifier = build_verifier(args, GRID, None, recorded)
    assert verifier.segmenter.labels == generation.labels == ("Hair", "Face", *CLOTHING_LABELS)
    assert verifier.segmenter.model_id == "some/segformer"
    with pytest.raises(ValueError, match="--mask_labels Hair differs from the mask the run was generated with"):
        verification_segmenter(VerifyArguments(run_or_dataset="run", mask_labels=["Hair"]), recorded)
    folder = verification_segmenter(VerifyArguments(run_or_dataset="dataset", include_clothing=True))
    assert folder.labels == (*APPEARANCE_LABELS, *CLOTHING_LABELS)
    assert verification_segmenter(VerifyArguments(run_or_dataset="dataset", segmentation_model="none")) is None


def test_the_world_verifier_reads_age_with_the_worlds_clip_and_the_rest_with_the_stand_in():
    from cf_hf.world.verification import STAND_IN_ATTRIBUTES, world_verifier, world_zero_shot_prompts

    assert STAND_IN_ATTRIBUTES == ("gender", "skin_tone")
    prompts = world_zero_shot_prompts(GRID)
    assert prompts.prompts("age", "elderly", "doctor")[:2] == ["a photo of an elderly person", "a photo of an old person"]
    from cf_hf.generation.verification.scores import grid_attribute, person_box, square_person_crop

    base = _base_image()
    wanted = {**APPEARANCE, "age": "elderly"}
    edited = _edit(base, wanted)
    box = person_box(WorldSegmenter()([base])[0], (base.height, base.width), VerificationConfig().crop_margin)
    reader = world_verifier(GRID, VerificationConfig()).classifier
    probabilities = reader([square_person_crop(edited, box)], ["doctor"])
    values = {name: list(grid_attribute(GRID, name).values) for name in GRID.names}
    assert probabilities["age"][0].argmax() == values["age"].index(wanted["age"])  # the world's CLIP reads it
    assert 0 < probabilities["age"][0].max() < 1  # a softmax, not the stand-in's certainty
    for name in STAND_IN_ATTRIBUTES:
        assert probabilities[name][0, values[name].index(wanted[name])] == 1.0
    assert reader.provenance["stand_in_attributes"] == "gender,skin_tone"
    assert reader.provenance["model_id"].startswith("cf_hf/world/original_clip@")
