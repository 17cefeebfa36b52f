"""CounterfactualTrainer, train(), LoRA, tower freezing, `cf-hf train`, and bad inputs."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import assert_no_progress_bar
from safetensors.torch import load_file
from testing_utils.training import make_counterfactual_dataset
from transformers import CLIPModel, CLIPProcessor

from cf_hf.cli import main as cf_hf_main
from cf_hf.methods.counterfactual.modeling import CounterfactualCLIPModel
from cf_hf.methods.counterfactual.sampler import CounterfactualCollator, group_index
from cf_hf.methods.counterfactual.trainer import CounterfactualTrainingArguments, apply_lora, train
from cf_hf.methods.training_utils import resolve_checkpoint

ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


@pytest.fixture(scope="module")
def dataset():
    return make_counterfactual_dataset(num_groups=8, members=4)


def _args(tmp_path, name="out", **overrides):
    settings = {
        "output_dir": str(tmp_path / name),
        "per_device_train_batch_size": 8,
        "group_size": 4,
        "max_steps": 4,
        "learning_rate": 1e-3,
        "save_strategy": "no",
        "logging_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 0,
    } | overrides
    return CounterfactualTrainingArguments(**settings)


def _loss_on(model_dir, dataset):
    model = CounterfactualCLIPModel.from_pretrained(model_dir).eval()
    processor = CLIPProcessor.from_pretrained(model_dir)
    batch = CounterfactualCollator(processor, group_index(dataset["group_id"]))(list(dataset))
    with torch.no_grad():
        return model(**batch).loss.item()


def _weights(model_dir):
    return load_file(str(next(model_dir.glob("*.safetensors"))))


def test_a_few_trainer_steps_reduce_the_loss(tiny_clip_dir, dataset, tmp_path):
    output_dir = train(str(tiny_clip_dir), dataset, _args(tmp_path, max_steps=12))
    assert _loss_on(output_dir, dataset) < _loss_on(tiny_clip_dir, dataset) - 0.1
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["architectures"] == ["CLIPModel"] and config["beta_cf"] == 1.0
    assert (tmp_path / "out" / "processor_config.json").exists() or (
        tmp_path / "out" / "preprocessor_config.json"
    ).exists()


def test_lora_trains_only_adapter_weights(tiny_clip_dir, tmp_path):
    model = apply_lora(CounterfactualCLIPModel.from_pretrained(tiny_clip_dir), _args(tmp_path, lora_r=4))
    trainable = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    adapted = {name.split(".")[-4] for name in trainable}  # ...q_proj.lora_A.default.weight
    assert adapted == set(ATTENTION_PROJECTIONS)
    assert any("vision_model" in name for name in trainable) and any(
        "text_model" in name for name in trainable
    )


def test_lora_puts_no_adapters_in_a_frozen_tower(tiny_clip_dir, tmp_path):
    model = apply_lora(
        CounterfactualCLIPModel.from_pretrained(tiny_clip_dir), _args(tmp_path, lora_r=4, freeze_vision=True)
    )
    trainable = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    assert trainable and not any("vision_model" in name for name in trainable)


def test_lora_training_saves_a_merged_plain_clip_checkpoint(tiny_clip_dir, dataset, tmp_path):
    output_dir = train(
        str(tiny_clip_dir), dataset, _args(tmp_path, lora_r=4, lora_alpha=8, learning_rate=1e-2)
    )
    before, after = _weights(tiny_clip_dir), _weights(tmp_path / "out")
    assert set(after) == set(before)  # merged: no adapter keys left
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(
        name.split(".")[-2] in ATTENTION_PROJECTIONS and name.endswith("weight") for name in changed
    )
    CLIPModel.from_pretrained(output_dir)


def test_freeze_vision_leaves_the_vision_tower_unchanged(tiny_clip_dir, dataset, tmp_path):
    train(str(tiny_clip_dir), dataset, _args(tmp_path, freeze_vision=True))
    before, after = _weights(tiny_clip_dir), _weights(tmp_path / "out")
    vision = [name for name in before if name.startswith(("vision_model", "visual_projection"))]
    assert all(torch.equal(before[name], after[name]) for name in vision)
    assert not torch.equal(before["text_projection.weight"], after["text_projection.weight"])


def _cli(model_dir, dataset_dir, output_dir, *extra):
    return cf_hf_main(
        [
            "train",
            "--model_name_or_path",
            str(model_dir),
            "--dataset",
            str(dataset_dir),
            "--output_dir",
            str(output_dir),
            "--per_device_train_batch_size",
            "8",
            "--group_size",
            "4",
            "--max_steps",
            "6",
            "--learning_rate",
            "1e-3",
            "--save_strategy",
            "steps",
            "--save_steps",
            "5",
            "--use_cpu",
            "--report_to",
            "none",
            "--disable_tqdm",
            "true",
            "--logging_strategy",
            "no",
            "--seed",
            "0",
            *extra,
        ]
    )


def test_cli_trains_from_a_folder_and_resumes_to_the_same_weights(tiny_clip_dir, dataset, tmp_path):
    dataset.save_to_disk(tmp_path / "dataset")
    assert _cli(tiny_clip_dir, tmp_path / "dataset", tmp_path / "full") == 0
    # 4 batches per epoch: checkpoint-5 is in the second epoch, one batch in.
    resumed = tmp_path / "resumed"
    assert (
        _cli(
            tiny_clip_dir,
            tmp_path / "dataset",
            resumed,
            "--resume_from_checkpoint",
            str(tmp_path / "full" / "checkpoint-5"),
        )
        == 0
    )
    full, again = _weights(tmp_path / "full"), _weights(resumed)
    assert all(torch.allclose(full[name], again[name], atol=1e-6) for name in full)
    CLIPModel.from_pretrained(resumed)


def test_dataset_without_group_id_is_an_error(tiny_clip_dir, dataset, tmp_path):
    with pytest.raises(ValueError, match="lacks the column"):
        train(str(tiny_clip_dir), dataset.remove_columns("group_id"), _args(tmp_path))


def test_caption_suffix_column_missing_from_the_dataset_is_an_error(tiny_clip_dir, dataset, tmp_path):
    with pytest.raises(ValueError, match=r"\['decorator_framing'\] that the training dataset lacks"):
        train(str(tiny_clip_dir), dataset, _args(tmp_path, caption_suffix_columns=["decorator_framing"]))


def test_training_reads_caption_suffix_columns(tiny_clip_dir, dataset, tmp_path):
    framed = dataset.add_column(
        "framing", ["close-up" if i % 2 else "wide shot" for i in range(len(dataset))]
    )
    plain = train(str(tiny_clip_dir), framed, _args(tmp_path, "plain"))
    suffixed = train(
        str(tiny_clip_dir), framed, _args(tmp_path, "suffixed", caption_suffix_columns=["framing"])
    )
    plain_weights, suffixed_weights = _weights(tmp_path / "plain"), _weights(tmp_path / "suffixed")
    assert plain and suffixed
    assert any(not torch.equal(plain_weights[name], suffixed_weights[name]) for name in plain_weights)


def test_all_singleton_groups_are_an_error(tiny_clip_dir, tmp_path):
    singletons = make_counterfactual_dataset(num_groups=8, members=1)
    with pytest.raises(ValueError, match="single image"):
        train(str(tiny_clip_dir), singletons, _args(tmp_path))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"per_device_train_batch_size": 6}, "not divisible by group_size=4"),
        ({"beta_cf": -0.5}, "must be >= 0"),
        ({"beta_clip": 0.0, "beta_cf": 0.0}, "both 0"),
        ({"group_size": 1, "per_device_train_batch_size": 4}, "group_size must be >= 2"),
        ({"freeze_vision": True, "freeze_text": True}, "both set"),
    ],
)
def test_bad_training_arguments_are_errors(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        _args(tmp_path, **overrides)


def test_lora_target_matching_no_module_is_an_error(tiny_clip_dir, tmp_path):
    model = CounterfactualCLIPModel.from_pretrained(tiny_clip_dir)
    with pytest.raises(ValueError, match="'query' matches no linear module"):
        apply_lora(model, _args(tmp_path, lora_r=4, lora_target_modules=["q_proj", "query"]))


def _one_line_error(capsys, argv) -> str:
    """Run `cf-hf train argv`; the error must be one line on stderr, with no traceback."""
    assert cf_hf_main(["train", *argv]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("cf-hf train: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def _cli_argv(model_dir, dataset_dir, output_dir, *extra):
    return ["--model_name_or_path", str(model_dir), "--dataset", str(dataset_dir), "--output_dir",
            str(output_dir), "--per_device_train_batch_size", "8", "--group_size", "4", "--max_steps", "1",
            "--use_cpu", "--report_to", "none", "--save_strategy", "no", *extra]


def test_cli_reports_a_bad_option_in_one_line(tiny_clip_dir, tmp_path, capsys):
    line = _one_line_error(capsys, _cli_argv(tiny_clip_dir, tmp_path, tmp_path / "out", "--beta_cf", "-1"))
    assert "beta_clip and beta_cf must be >= 0" in line


def test_training_without_output_dir_is_refused(tiny_clip_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = _cli_argv(tiny_clip_dir, tmp_path, tmp_path / "out")
    argv = argv[:4] + argv[6:]  # no --output_dir
    assert "output_dir is required (--output_dir)" in _one_line_error(capsys, argv)
    assert not (tmp_path / "trainer_output").exists()


@pytest.mark.parametrize("file_format", ["parquet", "arrow"])
def test_cli_names_a_truncated_dataset_file(tiny_clip_dir, dataset, tmp_path, capsys, file_format):
    if file_format == "parquet":  # parquet shards, as load_dataset(folder) reads them
        shard = tmp_path / "dataset" / "data" / "train-00000-of-00001.parquet"
        shard.parent.mkdir(parents=True)
        dataset.to_parquet(str(shard))
    else:  # a save_to_disk folder
        dataset.save_to_disk(tmp_path / "dataset")
        shard = next((tmp_path / "dataset").glob("*.arrow"))
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    line = _one_line_error(capsys, _cli_argv(tiny_clip_dir, tmp_path / "dataset", tmp_path / "out"))
    assert f"{shard} is not a readable {file_format} file" in line


def test_cli_names_a_truncated_safetensors_file(tiny_clip_dir, dataset, tmp_path, capsys):
    import shutil

    model_dir = shutil.copytree(tiny_clip_dir, tmp_path / "model")
    weights = next(model_dir.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    dataset.save_to_disk(tmp_path / "dataset")
    line = _one_line_error(capsys, _cli_argv(model_dir, tmp_path / "dataset", tmp_path / "out"))
    assert f"{weights} is not a readable safetensors file" in line


def test_cli_names_the_row_of_a_broken_image(tiny_clip_dir, dataset, tmp_path, capsys):
    import datasets

    rows = dataset.cast_column("image", datasets.Image(decode=False)).to_dict()
    rows["image"][5] = {"bytes": b"not an image", "path": "broken.png"}
    datasets.Dataset.from_dict(rows, features=dataset.features).save_to_disk(tmp_path / "dataset")
    argv = _cli_argv(tiny_clip_dir, tmp_path / "dataset", tmp_path / "out", "--max_steps", "4", "--no_progress")  # an epoch
    line = _one_line_error(capsys, argv)
    assert "training dataset row 5 (image 'broken.png'): cannot be read" in line


def test_cli_names_the_row_of_a_missing_caption(tiny_clip_dir, dataset, tmp_path, capsys):
    captions = list(dataset["caption"])
    captions[3] = None
    dataset.remove_columns("caption").add_column("caption", captions).save_to_disk(tmp_path / "dataset")
    line = _one_line_error(capsys, _cli_argv(tiny_clip_dir, tmp_path / "dataset", tmp_path / "out"))
    assert "'caption' is missing or not a string in 1 row(s) (3)" in line


def test_rows_without_group_id_are_refused_before_training(tiny_clip_dir, dataset, tmp_path):
    group_ids = list(dataset["group_id"])
    group_ids[2] = group_ids[9] = None
    pooled = dataset.remove_columns("group_id").add_column("group_id", group_ids)
    with pytest.raises(ValueError, match=r"'group_id' is missing in 2 row\(s\) \(2, 9\)"):
        train(str(tiny_clip_dir), pooled, _args(tmp_path))


@pytest.mark.parametrize("word", ["last", "True", "true", True])
def test_resume_from_last_finds_the_latest_checkpoint(tmp_path, word):
    for step in (5, 10, 9):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert resolve_checkpoint(word, str(tmp_path)) == str(tmp_path / "checkpoint-10")


def test_resume_from_last_skips_a_checkpoint_the_trainer_did_not_finish(tmp_path, caplog):
    for step in (5, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-10" / "trainer_state.json").write_text('{"global_step": 1')  # killed while saving
    (tmp_path / "checkpoint-5" / "model.safetensors").write_bytes(b"")
    (tmp_path / "checkpoint-4").mkdir()
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text("{}")
    assert resolve_checkpoint("last", str(tmp_path)) == str(tmp_path / "checkpoint-4")
    assert "skipping checkpoint-10" in caplog.text and "skipping checkpoint-5" in caplog.text
    with pytest.raises(ValueError, match="checkpoint-10.*is incomplete.*remove it"):
        resolve_checkpoint(str(tmp_path / "checkpoint-10"), str(tmp_path))


def test_resume_from_last_without_a_checkpoint_is_one_line(tiny_clip_dir, dataset, tmp_path, capsys):
    dataset.save_to_disk(tmp_path / "dataset")
    argv = _cli_argv(tiny_clip_dir, tmp_path / "dataset", tmp_path / "out", "--resume_from_checkpoint", "True")
    assert "no checkpoint-* folder in output_dir" in _one_line_error(capsys, argv)


def test_cli_resumes_from_last(tiny_clip_dir, dataset, tmp_path):
    dataset.save_to_disk(tmp_path / "dataset")
    assert _cli(tiny_clip_dir, tmp_path / "dataset", tmp_path / "full") == 0
    for checkpoint in (tmp_path / "full").glob("checkpoint-*"):
        if checkpoint.name != "checkpoint-5":
            import shutil

            shutil.rmtree(checkpoint)
    full = _weights(tmp_path / "full")
    assert _cli(tiny_clip_dir, tmp_path / "dataset", tmp_path / "full", "--resume_from_checkpoint", "last") == 0
    again = _weights(tmp_path / "full")
    assert all(torch.allclose(full[name], again[name], atol=1e-6) for name in full)


def test_no_progress_silences_every_bar(tiny_clip_dir, dataset, tmp_path, capfd, progress_bars_restored):
    shard = tmp_path / "dataset" / "data" / "train-00000-of-00001.parquet"
    shard.parent.mkdir(parents=True)
    dataset.to_parquet(str(shard))
    capfd.readouterr()
    # A parquet folder: datasets builds its cache (a bar), the model loads (a bar), the Trainer trains.
    argv = _cli_argv(tiny_clip_dir, tmp_path / "dataset", tmp_path / "out", "--max_steps", "2", "--no_progress")
    assert cf_hf_main(["train", *argv]) == 0
    assert_no_progress_bar(capfd.readouterr().err)


def _count_processed_images(monkeypatch, processor_dir) -> list[int]:
    """Patch the image processor to record how many images each call processes."""
    processor_class = type(CLIPProcessor.from_pretrained(processor_dir).image_processor)
    preprocess, counts = processor_class.__call__, []

    def counted(self, images=None, *args, **kwargs):
        counts.append(len(images) if isinstance(images, (list, tuple)) else 1)
        return preprocess(self, images, *args, **kwargs)

    monkeypatch.setattr(processor_class, "__call__", counted)
    return counts


@pytest.mark.parametrize("workers", [0, 1])
def test_the_pixel_cache_processes_each_image_once_and_trains_to_the_same_weights(
        tiny_clip_dir, world_counterfactual_dataset, tmp_path, monkeypatch, workers):
    import datasets

    from cf_hf.world.demo.stages import decorator_columns

    rows = len(datasets.load_dataset(str(world_counterfactual_dataset), split="train"))
    settings = dict(per_device_train_batch_size=8, max_steps=3 * rows // 8, dataloader_num_workers=workers,
                    caption_suffix_columns=list(decorator_columns()))
    counts = _count_processed_images(monkeypatch, tiny_clip_dir)
    cached = train(str(tiny_clip_dir), str(world_counterfactual_dataset), _args(tmp_path, "cached", **settings))
    cached_count = sum(counts)
    counts.clear()
    plain = train(str(tiny_clip_dir), str(world_counterfactual_dataset), _args(tmp_path, "plain", pixel_cache_mb=0, **settings))
    if workers == 0:  # (a worker process's calls are not seen here)
        # Three epochs: each image decoded and processed once, against once per batch it is in.
        assert cached_count == rows and sum(counts) >= 3 * rows
    cached, plain = _weights(tmp_path / "cached"), _weights(tmp_path / "plain")
    assert all(torch.equal(cached[name], plain[name]) for name in plain)


def test_a_pixel_cache_smaller_than_the_data_keeps_what_fits(tiny_clip_dir, world_counterfactual_dataset, tmp_path, monkeypatch):
    import datasets

    rows = len(datasets.load_dataset(str(world_counterfactual_dataset), split="train"))
    image_bytes = 3 * 32 * 32 * 4  # one processed 32-px image, float32
    counts = _count_processed_images(monkeypatch, tiny_clip_dir)
    train(str(tiny_clip_dir), str(world_counterfactual_dataset),
          _args(tmp_path, "small", per_device_train_batch_size=8, max_steps=2 * rows // 8,
                pixel_cache_mb=10 * image_bytes / 2**20))  # fmt: skip
    small_count = sum(counts)
    counts.clear()
    train(str(tiny_clip_dir), str(world_counterfactual_dataset), _args(tmp_path, "plain", per_device_train_batch_size=8,
                                                       max_steps=2 * rows // 8, pixel_cache_mb=0))
    # Ten images kept: the second epoch processes the others again.
    assert rows < small_count <= sum(counts) - 10
    small, plain = _weights(tmp_path / "small"), _weights(tmp_path / "plain")
    assert all(torch.equal(small[name], plain[name]) for name in plain)


def test_a_negative_pixel_cache_is_refused(tmp_path):
    with pytest.raises(ValueError, match="pixel_cache_mb must be >= 0"):
        _args(tmp_path, pixel_cache_mb=-1)


def test_training_without_a_progress_bar_prints_no_log_dictionaries(tiny_clip_dir, dataset, tmp_path, capsys):
    # `--quiet` turns the Trainer's bar off; the Trainer would then print every log dictionary instead.
    train(str(tiny_clip_dir), dataset, _args(tmp_path, max_steps=2, logging_strategy="steps", logging_steps=1))
    assert "'loss'" not in capsys.readouterr().out
