"""`cf-hf evaluate` end to end: results.json in the documented format, report.md and the plots."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import assert_no_progress_bar
from testing_utils.evaluation import make_fairface, make_imagenet, make_karpathy

from cf_hf.cli import main as cf_hf_main
from cf_hf.evaluation.results import load_results


def main(argv):
    """`cf-hf evaluate` with these options, through the dispatcher."""
    return cf_hf_main(["evaluate", *argv])


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluation_data")
    make_fairface(root / "fairface", n=24)
    make_karpathy(root / "flickr")
    make_imagenet(root / "imagenet")
    return root


def _data_args(data_dir) -> list[str]:
    return ["--fairface", str(data_dir / "fairface"), "--flickr", str(data_dir / "flickr" / "dataset_flickr30k.json"),
            "--imagenet", str(data_dir / "imagenet"), "--concepts", "doctor", "nurse", "--k", "12", "6",
            "--no_progress"]


def test_evaluate_two_models_writes_results_report_and_plots(tmp_path, data_dir, tiny_clip_dir, capsys):
    output = tmp_path / "out"
    code = main(["--model", str(tiny_clip_dir), "--model", f"copy={tiny_clip_dir}", *_data_args(data_dir),
                 "--output_dir", str(output)])
    assert code == 0
    results = json.loads((output / "results.json").read_text())
    assert set(results) == {"schema_version", "models", "protocol"} and results["schema_version"] == 1
    assert list(results["models"]) == [tiny_clip_dir.name, "copy"]
    entry = results["models"]["copy"]
    for attribute in ("gender", "race", "age"):
        assert set(entry[attribute]) == {"max_skew", "min_skew", "ndkl"}
        detail = entry["fairness"]["fairface"]["attributes"][attribute]["by_desired"]
        assert set(detail) == {"equal_opportunity", "demographic_parity"} and set(detail["equal_opportunity"]) == {"12", "6"}
        assert len(detail["demographic_parity"]["6"]["ndkl"]["per_query"]) == 10  # 2 concepts x 5 templates
        assert entry[attribute]["max_skew"] == detail["equal_opportunity"]["12"]["max_skew"]["mean"]
    assert 0 <= entry["zero_shot_accuracy"] <= 1 and 0 <= entry["recall_at_5"] <= 1
    assert set(entry["able"]) == {"gender", "race", "age"}
    protocol = results["protocol"]
    assert protocol["units"] == "fraction" and protocol["fairness"]["convention"] == "berg"
    assert protocol["fairness"]["galleries"]["fairface"]["random_floor"]["gender"]["equal_opportunity"]["max_skew"] >= 0
    report = (output / "report.md").read_text()
    for heading in ("## Summary", "## Protocol", "## Fairness details", "worst prompt", "MaxSkew per concept",
                    "### Retrieval `flickr30k`", "### Zero-shot `imagenet`", "*random ranking*",
                    "## Both target distributions", "| MaxSkew (uniform) | MaxSkew (gallery prior) |"):
        assert heading in report
    for plot in ("tradeoff", "fairness_fairface", "skew_fairface"):
        path = output / "plots" / f"{plot}.png"
        assert path.read_bytes()[:8] == PNG_MAGIC
        assert f"plots/{plot}.png" in report
    assert "copy: gender MaxSkew" in capsys.readouterr().out
    assert list((output / "embeddings").glob("*.npy"))  # the default cache folder


def test_evaluate_a_sweep_folder(tmp_path, data_dir, tiny_clip_dir):
    sweep = tmp_path / "sweep"
    for alpha in ("0", "0.5", "1"):
        shutil.copytree(tiny_clip_dir, sweep / f"alpha-{alpha}")
    (sweep / "sweep.json").write_text(json.dumps({"alphas": [0, 0.5, 1]}))
    output = tmp_path / "out"
    code = main(["--sweep", str(sweep), "--model", f"original={tiny_clip_dir}", *_data_args(data_dir),
                 "--output_dir", str(output), "--cache_dir", "none"])
    assert code == 0
    results = json.loads((output / "results.json").read_text())
    assert list(results["models"]) == ["original", "alpha=0", "alpha=0.5", "alpha=1"]
    assert [results["models"][name].get("alpha") for name in results["models"]] == [None, 0.0, 0.5, 1.0]
    # Same weights everywhere: every model gets the original's numbers, mostly from the cache.
    assert results["models"]["alpha=1"]["gender"] == results["models"]["original"]["gender"]
    assert results["protocol"]["embedding_cache"]["hits"] > results["protocol"]["embedding_cache"]["misses"]
    assert (output / "plots" / "tradeoff.png").is_file()
    # The one reader of the schema sees the sweep in α order and the k of the headline numbers.
    read = load_results(output / "results.json")
    assert [(name, model.alpha, model.fairness_k) for name, model in read.sweep().items()] == [
        ("original", None, 12), ("alpha=0", 0.0, 12), ("alpha=0.5", 0.5, 12), ("alpha=1", 1.0, 12)]
    assert read.model_for_alpha(0.5).fairness["gender"] == results["models"]["alpha=0.5"]["gender"]


def test_evaluate_without_models_or_data_fails_clearly(tmp_path, data_dir, tiny_clip_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--fairface", str(data_dir / "fairface"), "--output_dir", str(tmp_path)])
    assert exit_info.value.code == 2 and "give at least one --model or --sweep" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--model", str(tiny_clip_dir), "--output_dir", str(tmp_path)])
    assert "give at least one evaluation set" in capsys.readouterr().err


def test_evaluate_refuses_the_default_k_on_a_smaller_gallery(tmp_path, data_dir, tiny_clip_dir, capsys):
    code = main(["--model", str(tiny_clip_dir), "--fairface", str(data_dir / "fairface"), "--no_progress",
                 "--output_dir", str(tmp_path / "out")])
    assert code == 2
    error = capsys.readouterr().err
    assert "gallery 'fairface' has 24 images: k = 1000 would rank all of it" in error and "--k" in error
    assert not (tmp_path / "out" / "results.json").exists()


def test_evaluate_warns_and_reports_the_ks_left_out(tmp_path, data_dir, tiny_clip_dir, capsys):
    output = tmp_path / "out"
    with pytest.warns(UserWarning, match=r"k = \[100\] left out"):
        code = main(["--model", str(tiny_clip_dir), "--fairface", str(data_dir / "fairface"), "--concepts", "doctor",
                     "--k", "12", "100", "--no_progress", "--no_plots", "--output_dir", str(output)])
    assert code == 0
    assert "at k = [12]; k = [100] left out (not below the gallery size)" in capsys.readouterr().out
    gallery = json.loads((output / "results.json").read_text())["protocol"]["fairness"]["galleries"]["fairface"]
    assert (gallery["ks"], gallery["left_out_ks"]) == ([12], [100])
    report = (output / "report.md").read_text()
    assert "gallery `fairface` (24 images), mean over 5 queries, k = 12," in report
    assert "**Warning:** k = [100] requested but not below the size of gallery `fairface` (24 images)" in report


def test_evaluate_reports_a_broken_dataset_by_name(tmp_path, tiny_clip_dir, capsys):
    make_fairface(tmp_path / "fairface", n=4)
    (tmp_path / "fairface" / "val" / "2.jpg").unlink()
    code = main(["--model", str(tiny_clip_dir), "--fairface", str(tmp_path / "fairface"),
                 "--output_dir", str(tmp_path / "out")])
    assert code == 2
    assert "line 3: image 'val/2.jpg' not found" in capsys.readouterr().err


def test_evaluate_a_datasets_gallery_from_disk(tmp_path, tiny_clip_dir, capfd, progress_bars_restored):
    import datasets
    from testing_utils.evaluation import GENDER_COLORS, write_image

    genders = ["Male", "Female"] * 4
    paths = [str(write_image(tmp_path / f"{index}.png", GENDER_COLORS[gender], index))
             for index, gender in enumerate(genders)]
    datasets.Dataset.from_dict(
        {"image": paths, "gender": genders, "profession": ["doctor", "doctor", "nurse", "nurse"] * 2},
        features=datasets.Features({"image": datasets.Image(), "gender": datasets.Value("string"),
                                    "profession": datasets.Value("string")}),
    ).save_to_disk(tmp_path / "gallery")
    concepts = tmp_path / "concepts.txt"
    concepts.write_text("doctor\nnurse\n")
    output = tmp_path / "out"
    capfd.readouterr()
    code = main(["--model", str(tiny_clip_dir), "--hf_gallery", str(tmp_path / "gallery"), "--attribute_columns",
                 "gender", "--concept_column", "profession", "--concepts", str(concepts), "--k", "4",
                 "--no_progress", "--no_plots", "--output_dir", str(output)])
    assert code == 0
    assert_no_progress_bar(capfd.readouterr().err)  # --no_progress: the model loading's bar too
    results = json.loads((output / "results.json").read_text())
    gallery = next(iter(results["models"][tiny_clip_dir.name]["fairness"].values()))
    assert set(gallery["query_concepts"]) == {"doctor", "nurse"}
    assert set(gallery["attributes"]["gender"]["worst_group_recall"]["per_group"]) == {"Male", "Female"}
    assert not (output / "plots").exists()


def test_the_report_puts_both_target_distributions_side_by_side():
    from cf_hf.evaluation.report import desired_side_by_side

    def block(max_skew, ndkl):
        return {"6": {"max_skew": {"mean": max_skew}, "ndkl": {"mean": ndkl}}}

    results = {
        "protocol": {"fairness": {"desired": ["equal_opportunity", "demographic_parity"],
                                  "galleries": {"fairface": {"attributes": ["gender"], "ks": [6]}}}},
        "models": {"original": {"fairness": {"fairface": {"main_k": 6, "attributes": {"gender": {"by_desired": {
            "equal_opportunity": block(0.5, 0.2), "demographic_parity": block(0.25, 0.125)}}}}}}},
    }
    lines = desired_side_by_side(results)
    assert "| model | attribute | MaxSkew (uniform) | MaxSkew (gallery prior) | NDKL (uniform) | NDKL (gallery prior) |" in lines
    assert "| original | gender | 0.500 | 0.250 | 0.200 | 0.125 |" in lines
    results["protocol"]["fairness"]["desired"] = ["equal_opportunity"]
    assert desired_side_by_side(results) == []
