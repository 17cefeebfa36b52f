"""The world's galleries written as FairFace / ImageNet-folder / Karpathy files: the real loaders read
them back to the same numbers as the in-memory sets, and `cf-hf compare` scores the world from them."""

import json

import pytest

from cf_hf.evaluation import EvaluationConfig, FairnessConfig, evaluate_models
from cf_hf.evaluation.embedding import EmbeddingConfig
from cf_hf.world import galleries
from cf_hf.world.corpus import ATTRIBUTES
from cf_hf.world.gallery_files import write_gallery_files
from cf_hf.world.original import ORIGINAL_DIR

K = 10


@pytest.fixture(scope="module")
def world_sets():
    people = galleries.attribute_gallery(galleries.fairface(per_cell=2, seed=11))
    fit_people = galleries.attribute_gallery(galleries.fairface(per_cell=3, seed=12), name="world_fairface_train")
    zero_shot = galleries.zero_shot_set(galleries.imagenet(per_class=3, seed=13))
    retrieval = galleries.retrieval_set(galleries.flickr(n_images=24, seed=14))
    return people, fit_people, zero_shot, retrieval


@pytest.fixture(scope="module")
def written(world_sets, tmp_path_factory):
    people, fit_people, zero_shot, retrieval = world_sets
    return write_gallery_files(tmp_path_factory.mktemp("world") / "galleries", people, zero_shot, retrieval,
                               fit_people=fit_people)


def _world_config():
    from cf_hf.concepts import load_concepts
    from cf_hf.world.demo.stages import WORLD_DIR

    fairness = FairnessConfig(templates=list(galleries.FAIRNESS_TEMPLATES),
                              concepts=load_concepts(WORLD_DIR / "professions.yaml"), ks=[K], random_floor_queries=4)
    return EvaluationConfig(fairness=fairness, embedding=EmbeddingConfig(cache_dir=None, progress=False))


def test_the_written_galleries_score_as_the_in_memory_sets_through_cf_hf_evaluate(world_sets, written, tmp_path):
    from cf_hf.cli import main

    people, _, zero_shot, retrieval = world_sets
    in_memory = evaluate_models({"original": ORIGINAL_DIR}, fairness=people, retrieval=retrieval, zero_shot=zero_shot,
                                config=_world_config())["models"]["original"]
    assert main(["evaluate", "--model", f"original={ORIGINAL_DIR}", *written.evaluation_options(K),
                 "--random_floor_queries", "4", "--cache_dir", "none", "--no_progress", "--no_plots",
                 "--output_dir", str(tmp_path / "evaluate")]) == 0
    from_files = json.loads((tmp_path / "evaluate" / "results.json").read_text())["models"]["original"]
    for attribute in ATTRIBUTES:
        for metric in ("max_skew", "ndkl"):
            assert from_files[attribute][metric] == pytest.approx(in_memory[attribute][metric], abs=1e-6)
    assert from_files["zero_shot_accuracy"] == pytest.approx(in_memory["zero_shot_accuracy"])
    assert from_files["recall_at_5"] == pytest.approx(in_memory["recall_at_5"])


def test_cf_hf_compare_scores_the_methods_on_the_written_world(written, tmp_path, capsys):
    from cf_hf.cli import main

    output = tmp_path / "compare"
    assert main(["compare", "--original", str(ORIGINAL_DIR), *written.evaluation_options(K),
                 *written.compare_options(), "--methods", "clip_clip", "biased_prompts", "--clip_clip_keep", "32",
                 "--biased_prompts_lambda", "100", "--random_floor_queries", "4", "--cache_dir", "none",
                 "--no_progress", "--output_dir", str(output)]) == 0
    results = json.loads((output / "results.json").read_text())
    assert list(results["models"]) == ["original", "clip_clip-keep=32", "biased_prompts-lambda=100"]
    # CLIP-clip was ranked on the train draw's three attributes, not on the scored gallery.
    fitted = json.loads((output / "methods" / "clip_clip-keep=32" / "config.json").read_text())["cf_hf_method"]
    assert fitted["fitted_on"]["images"] == 48 and fitted["settings"]["attribute"] == "+".join(ATTRIBUTES)
    report = (output / "report.md").read_text()
    assert "| clip_clip-keep=32 |" in report and "MaxSkew skin_tone" in report
    assert (output / "plots" / "frontier.png").stat().st_size > 0
    capsys.readouterr()


def test_gallery_files_refuse_to_replace_a_folder_they_did_not_write(world_sets, tmp_path):
    people, _, zero_shot, retrieval = world_sets
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="was not written by write_gallery_files"):
        write_gallery_files(tmp_path / "mine", people, zero_shot, retrieval)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_the_manifest_gives_the_options_that_score_the_written_galleries(written, capsys):
    """`--galleries DIR` stands for the long option list: the same parse as the options spelt out."""
    from cf_hf.cli import load_command

    command = load_command("compare")
    short = command.parse(["--galleries", str(written.folder), "--original", "o", "--output_dir", "x"])
    spelt = command.parse(["--original", "o", "--output_dir", "x", *written.evaluation_options(K),
                           *written.compare_options()])
    differing = {key for key in vars(spelt) if getattr(short, key) != getattr(spelt, key)}
    assert differing <= {"galleries", "random_floor_queries", "ks"}, differing
    overridden = command.parse(["--galleries", str(written.folder), "--original", "o", "--output_dir", "x",
                                "--fairface_attributes", "gender"])
    assert overridden.fairface_attributes == ["gender"]
    explore = load_command("explore").parse(["--galleries", str(written.folder), "--model", "o"])
    assert explore.fairface == str(written.fairface)


def test_a_folder_without_a_manifest_is_named(tmp_path, capsys):
    from cf_hf.cli import main

    assert main(["evaluate", "--galleries", str(tmp_path), "--model", "m", "--output_dir", "x"]) == 2
    assert "no galleries.yaml" in capsys.readouterr().err
