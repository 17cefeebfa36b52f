"""The whole chain through `generate`: rows, schema, groups, resumption, bad input, export."""

from __future__ import annotations

import json
import shutil
from collections import Counter, defaultdict

import datasets
import numpy as np
import pytest
from testing_utils.generation import (
    one_torch_thread,  # noqa: F401 (a fixture, used by name below)
    read_run_rows,
    tiny_components,
    tiny_components_dir,
    tiny_config,
)

from cf_hf.generation import GenerationConfig, RunFolderError, generate
from cf_hf.generation.run_folder import RunFolder
from dataset_builder import CounterfactualDataset, export_dataset, split_groups

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def components():
    return tiny_components(tiny_components_dir(), caption_writer="llm")


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, components):
    """One finished run that the read-only tests share."""
    output_dir = tmp_path_factory.mktemp("reference") / "run"
    report = generate(tiny_config(), **components, output_dir=output_dir, show_progress=False)
    return output_dir, report


@pytest.fixture(scope="module")
def exported(tmp_path_factory, reference_run):
    folder = export_dataset(reference_run[0], tmp_path_factory.mktemp("export") / "dataset", test_size=0.25)
    return folder, datasets.load_dataset(str(folder))


def _copy_run(reference_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(reference_run[0], target)
    return target


def test_full_chain_counts(reference_run):
    output_dir, report = reference_run
    config = tiny_config()
    assert report.complete and report.shards_generated == config.num_shards == 3
    assert report.base_images + sum(report.rejected.values()) == config.num_bases == 8
    assert report.base_images >= 4
    assert report.counterfactuals == 2 * report.base_images
    assert len(read_run_rows(output_dir)) == report.base_images + report.counterfactuals
    manifest = json.loads((output_dir / "manifest.json").read_text())
    assert manifest["complete"] and len(manifest["shards"]) == 3
    assert manifest["totals"]["rows"] == report.base_images + report.counterfactuals


def test_group_integrity(reference_run):
    groups = defaultdict(list)
    for row in read_run_rows(reference_run[0]):
        groups[row["group_id"]].append(row)
    for rows in groups.values():
        bases = [row for row in rows if row["is_base"]]
        assert len(bases) == 1  # every counterfactual's group has its base
        assert len({row["caption"] for row in rows}) == 1  # and all share the neutral caption
        assert len({row["concept"] for row in rows}) == 1
        assert len({(row["gender"], row["age"]) for row in rows if not row["is_base"]}) == len(rows) - 1
        assert bases[0]["gender"] is None and bases[0]["age"] is None
        assert len({row["decorator_lighting"] for row in rows}) == 1


def test_counterfactuals_differ_from_their_base_only_inside_the_person(reference_run):
    import io

    from PIL import Image

    rows = read_run_rows(reference_run[0])
    base = np.asarray(Image.open(io.BytesIO(rows[0]["image"])))
    painted = np.asarray(Image.open(io.BytesIO(rows[1]["image"])))
    changed = (base != painted).any(axis=-1).mean()
    assert rows[1]["group_id"] == rows[0]["group_id"] and 0 < changed <= 0.5


def test_appearances_are_balanced_within_a_concept(reference_run):
    rows = [row for row in read_run_rows(reference_run[0]) if not row["is_base"]]
    cells = Counter((row["gender"], row["age"]) for row in rows if row["concept"] == "doctor")
    assert max(cells.values()) - min(cells.values()) <= 2


def test_dataset_schema_after_export(exported):
    _, dataset = exported
    features = dataset["train"].features
    assert isinstance(features["image"], datasets.Image)
    assert features["concept"].names == ["doctor", "nurse"]
    assert features["gender"].names == ["female", "male"] and features["age"].names == ["young", "old"]
    assert features["is_base"].dtype == "bool" and features["seed"].dtype == "int64"
    assert features["mask_area"].dtype == "float32"
    assert {
        "decorator_setting",
        "decorator_lighting",
        "caption",
        "group_id",
        "prompt",
        "source_model",
    } <= set(features)
    row = dataset["train"][0]
    assert row["image"].size == (64, 64)


def test_export_splits_by_group(exported, reference_run):
    folder, dataset = exported
    train, test = set(dataset["train"]["group_id"]), set(dataset["test"]["group_id"])
    assert train and test and not train & test
    assert len(dataset["train"]) + len(dataset["test"]) == len(read_run_rows(reference_run[0]))
    card = (folder / "README.md").read_text()
    assert "configs:" in card and "data/train-*" in card and "Limitations and biases" in card
    assert sorted(p.name for p in (folder / "data").iterdir()) == [
        "test-00000-of-00001.parquet", "train-00000-of-00001.parquet",
    ]  # fmt: skip


def test_builder_used_directly(reference_run, tmp_path):
    builder = CounterfactualDataset(run_dir=str(reference_run[0]), test_size=0.0, cache_dir=str(tmp_path))
    builder.download_and_prepare()
    dataset = builder.as_dataset()
    assert list(dataset) == ["train"]
    assert len(dataset["train"]) == len(read_run_rows(reference_run[0]))


def test_split_groups_is_whole_groups_and_stable():
    train, test = split_groups([f"g{i}" for i in range(20)], 0.2, seed=1)
    assert len(test) == 4 and not train & test and len(train | test) == 20
    assert split_groups([f"g{i}" for i in range(20)], 0.2, seed=1) == (train, test)


def test_same_seed_same_dataset(reference_run, components, tmp_path):
    generate(tiny_config(), **components, output_dir=tmp_path / "again", show_progress=False)
    assert read_run_rows(tmp_path / "again") == read_run_rows(reference_run[0])


def test_resuming_a_finished_run_loads_no_model(reference_run, tmp_path):
    run = _copy_run(reference_run, tmp_path)
    fresh = tiny_components(tiny_components_dir(), caption_writer="llm")
    report = generate(tiny_config(), **fresh, output_dir=run, resume=True, show_progress=False)
    assert report.complete and report.shards_resumed == 3 and report.shards_generated == 0
    assert fresh["caption_writer"]._pipeline is None and fresh["text_to_image"]._pipeline is None
    assert fresh["segmenter"]._model is None and fresh["inpainter"]._pipeline is None


def test_corrupt_shard_is_regenerated_not_loaded(reference_run, components, tmp_path):
    run = _copy_run(reference_run, tmp_path)
    folder = RunFolder(run)
    original = folder.shard_path(1).read_bytes()
    folder.shard_path(1).write_bytes(original[: len(original) // 2])  # a truncated shard
    with pytest.raises(RunFolderError, match="corrupt"):
        export_dataset(run, tmp_path / "dataset")
    report = generate(tiny_config(), **components, output_dir=run, resume=True, show_progress=False)
    assert report.shards_regenerated == 1 and report.shards_generated == 1 and report.shards_resumed == 2
    assert folder.shard_path(1).read_bytes() == original


def test_shard_without_receipt_is_regenerated(reference_run, components, tmp_path):
    run = _copy_run(reference_run, tmp_path)
    folder = RunFolder(run)
    folder.receipt_path(2).unlink()  # killed between writing the shard and its receipt
    (folder.path / "shards" / ".shard-00000.parquet.abc.tmp").write_bytes(b"partial")
    report = generate(tiny_config(), **components, output_dir=run, resume=True, show_progress=False)
    assert report.shards_generated == 1 and report.complete
    assert not list((folder.path / "shards").glob(".*.tmp"))
    assert read_run_rows(run) == read_run_rows(reference_run[0])


def test_folder_with_another_runs_manifest_is_refused(reference_run, components, tmp_path):
    run = _copy_run(reference_run, tmp_path)
    with pytest.raises(RunFolderError, match="holds another run.*seed"):
        generate(tiny_config(seed=1), **components, output_dir=run, resume=True, show_progress=False)


def test_same_run_without_resume_is_refused(reference_run, components):
    with pytest.raises(RunFolderError, match="pass resume=True"):
        generate(tiny_config(), **components, output_dir=reference_run[0], show_progress=False)


def test_non_empty_folder_without_manifest_is_refused(components, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderError, match="not empty"):
        generate(tiny_config(), **components, output_dir=tmp_path, show_progress=False)


def test_a_bare_text_to_image_pipeline_as_inpainter_is_refused(components, tmp_path):
    wrong = {**components, "inpainter": components["text_to_image"].pipeline}
    with pytest.raises(TypeError, match="is not an inpainting pipeline"):
        generate(tiny_config(), **wrong, output_dir=tmp_path / "run", show_progress=False)


def test_unfinished_run_is_not_exported(tmp_path, components):
    config = tiny_config()
    generate(config, **components, output_dir=tmp_path / "run", show_progress=False)
    RunFolder(tmp_path / "run").receipt_path(0).unlink()
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    manifest["complete"] = False
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RunFolderError, match="not finished"):
        export_dataset(tmp_path / "run", tmp_path / "dataset")


class ThreadProcess:
    """Process `index` of `count`, run as a thread; `wait_for_everyone` is a real barrier."""

    def __init__(self, index, count, barrier):
        self.process_index, self.local_process_index, self.num_processes = index, index, count
        self.is_main_process = index == 0
        self.barrier = barrier

    def wait_for_everyone(self):
        self.barrier.wait(timeout=120)


def test_work_splits_across_processes(reference_run, tmp_path):
    import threading

    run, barrier, reports, errors = tmp_path / "run", threading.Barrier(2), {}, []
    # Each process has its own models, as with `accelerate launch`; loaded here, one after the
    # other, because model loading is not thread-safe.
    models = [tiny_components(tiny_components_dir(), caption_writer="llm") for _ in range(2)]
    for own in models:
        own["caption_writer"].pipeline, own["text_to_image"].pipeline, own["inpainter"].pipeline  # noqa: B018
        own["segmenter"].label_ids  # noqa: B018

    def process(index):
        try:
            reports[index] = generate(tiny_config(), **models[index], output_dir=run, show_progress=False,
                                      distributed=ThreadProcess(index, 2, barrier))  # fmt: skip
        except BaseException as error:
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=process, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert [reports[i].shards_generated for i in range(2)] == [2, 1]  # shards 0, 2 and 1
    assert reports[0].complete and json.loads((run / "manifest.json").read_text())["complete"]
    assert read_run_rows(run) == read_run_rows(reference_run[0])


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="captions_per_concept"):
        tiny_config(captions_per_concept=0)
    with pytest.raises(ValueError, match="appearances_per_base"):
        tiny_config(appearances_per_base=5)
    with pytest.raises(ValueError, match="no concepts"):
        tiny_config(concepts=[])
    assert isinstance(tiny_config(), GenerationConfig)


def test_exports_with_the_same_folder_name_do_not_share_a_cache(reference_run, components, tmp_path):
    """`load_dataset(folder)` keys its cache on the folder's name and the card's YAML: the card's
    split sizes keep two different runs exported as `.../dataset` apart; `load_training_dataset`
    keys on the files themselves."""
    from dataclasses import replace

    from cf_hf.methods.training_utils import load_training_dataset

    generate(replace(tiny_config(), seed=7), **components, output_dir=tmp_path / "other", show_progress=False)
    first = export_dataset(reference_run[0], tmp_path / "a" / "dataset", test_size=0.0)
    second = export_dataset(tmp_path / "other", tmp_path / "b" / "dataset", test_size=0.0)
    cache = str(tmp_path / "hf_cache")
    seeds = {}
    for folder in (first, second):
        seeds[folder] = sorted(datasets.load_dataset(str(folder), split="train", cache_dir=cache)["seed"])
    assert seeds[first] != seeds[second]
    for folder in (first, second):
        assert sorted(load_training_dataset(str(folder))["seed"]) == seeds[folder]
    with pytest.raises(ValueError, match="no split 'test'"):
        load_training_dataset(str(first), split="test")
