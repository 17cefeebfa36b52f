"""Issue 26: the commands under bad input. Each class of the census has a test: no user file is lost,
no result is silently wrong, and every bad input is one line on stderr (`cf-hf <command>: error: ...`),
exit status 2, no traceback."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from testing_utils.evaluation import make_fairface

from cf_hf.cli import main
from cf_hf.utils.output_folder import MARKER_NAME, OutputFolderError, claim_output_folder


def one_line_error(capsys, argv: list[str]) -> str:
    """Run `cf-hf argv`; the error must be exactly one line on stderr, exit status 2, no traceback.
    An exception escaping the dispatcher (a traceback for the user) fails the test."""
    capsys.readouterr()
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse's own option errors
        status = exit_.code
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith(f"cf-hf {argv[0]}: error:")]
    assert status == 2 and len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def checksums(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under `folder`."""
    return {path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def user_folder(folder: Path) -> Path:
    """A folder of the user's own files, named as a Trainer and the evaluation write theirs."""
    (folder / "checkpoint-1").mkdir(parents=True)
    (folder / "checkpoint-1" / "notes.txt").write_text("my checkpoint")
    (folder / "model.safetensors").write_bytes(b"my weights")
    (folder / "config.json").write_text('{"mine": true}')
    (folder / "results.json").write_text('{"my": "results"}')
    (folder / "report.md").write_text("# my report")
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory, tiny_clip_dir):
    """The tiny CLIP, broken copies of it, a FairFace gallery and an α sweep."""
    root = tmp_path_factory.mktemp("bad_input")
    fairface = make_fairface(root / "fairface", n=24)
    shutil.copy(fairface / "fairface_label_val.csv", fairface / "fairface_label_train.csv")
    broken = {}
    for name in ("truncated", "random_bytes", "bert_config"):
        broken[name] = root / name
        shutil.copytree(tiny_clip_dir, broken[name])
    weights = broken["truncated"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    (broken["random_bytes"] / "model.safetensors").write_bytes(bytes(range(256)) * 40)
    (broken["bert_config"] / "config.json").write_text(json.dumps(
        {"model_type": "bert", "architectures": ["BertModel"], "hidden_size": 32, "num_hidden_layers": 1,
         "num_attention_heads": 2, "intermediate_size": 37, "vocab_size": 100}))
    return {"root": root, "fairface": fairface, "broken": broken, "model": tiny_clip_dir}


def _evaluate_args(data, output: Path, *extra: str) -> list[str]:
    return ["evaluate", "--model", str(data["model"]), "--fairface", str(data["fairface"]), "--concepts", "doctor",
            "--k", "6", "--no_plots", "--quiet", "--output_dir", str(output), *extra]


# -- 1. lost files ---------------------------------------------------------------------------------


def _command_into(data, command: str, output: Path) -> list[str]:
    model, fairface = str(data["model"]), str(data["fairface"])
    return {
        "train": ["train", "--model_name_or_path", model, "--dataset", str(data["root"] / "no-dataset"),
                  "--output_dir", str(output), "--max_steps", "1", "--use_cpu"],
        "train-ba": ["train-ba", "--fairface", fairface, "--model_name_or_path", model, "--output_dir", str(output),
                     "--max_steps", "1", "--use_cpu", "--per_device_train_batch_size", "8", "--queue_size", "16",
                     "--eval_strategy", "no", "--early_stopping_patience", "0"],
        "classify": ["classify", "--real_dataset", str(data["root"] / "no-dataset"), "--model_name_or_path", model,
                     "--output_dir", str(output), "--num_train_epochs", "1", "--use_cpu"],
        "evaluate": _evaluate_args(data, output),
        "compare": ["compare", "--original", model, "--model", model, "--fairface", fairface, "--concepts", "doctor",
                    "--k", "6", "--no_plots", "--quiet", "--output_dir", str(output)],
        "generate": ["generate", "--output_dir", str(output), "--template_captions", "--quiet"],
        "verify": ["verify", fairface, "--output_dir", str(output), "--quiet"],
        "interpolate": ["interpolate", "--original", model, "--finetuned", model, "--alphas", "0.5", "--output_dir",
                        str(output), "--quiet"],
        "demo": ["demo", "--quick", "--quiet", "--seeds", "1", "--output_dir", str(output)],
    }[command]


@pytest.mark.parametrize("command", ["train", "train-ba", "classify", "evaluate", "compare", "generate", "verify",
                                     "interpolate", "demo"])
def test_a_command_refuses_a_folder_of_user_files_and_changes_none(data, tmp_path, capsys, command):
    folder = user_folder(tmp_path / "mine")
    before = checksums(folder)
    line = one_line_error(capsys, _command_into(data, command, folder))
    assert str(folder) in line and f"cf-hf {command} did not write it" in line
    assert checksums(folder) == before


def test_overwrite_replaces_only_what_the_command_wrote(tmp_path):
    folder = claim_output_folder(tmp_path / "out", "evaluate", {"k": 6}, owned=("results.json", "plots"))
    (folder / "results.json").write_text("{}")
    with pytest.raises(OutputFolderError, match=r"other settings \(k: 6 -> 12\)"):
        claim_output_folder(folder, "evaluate", {"k": 12}, owned=("results.json", "plots"))
    claim_output_folder(folder, "evaluate", {"k": 6}, owned=("results.json", "plots"))  # the same run continues
    (folder / "notes.md").write_text("the user's")
    with pytest.raises(OutputFolderError, match="notes.md, which cf-hf evaluate did not write"):
        claim_output_folder(folder, "evaluate", {"k": 12}, owned=("results.json", "plots"), overwrite=True)
    assert (folder / "notes.md").read_text() == "the user's" and (folder / "results.json").is_file()
    (folder / "notes.md").unlink()
    claim_output_folder(folder, "evaluate", {"k": 12}, owned=("results.json", "plots"), overwrite=True)
    assert sorted(path.name for path in folder.iterdir()) == [MARKER_NAME]
    with pytest.raises(OutputFolderError, match="written by cf-hf evaluate, not cf-hf train"):
        claim_output_folder(folder, "train", {}, overwrite=True)


def test_a_training_run_is_not_restarted_over_its_checkpoints_without_overwrite(tmp_path):
    claim_output_folder(tmp_path / "run", "train", {"seed": 1}, owned=("checkpoint-*",), resume=False)
    (tmp_path / "run" / "checkpoint-2").mkdir()
    with pytest.raises(OutputFolderError, match="holds an earlier cf-hf train run.*--overwrite"):
        claim_output_folder(tmp_path / "run", "train", {"seed": 1}, owned=("checkpoint-*",), resume=False)


def _earlier_output(folder: Path, command: str) -> Path:
    """A folder as `command` wrote it before cf_hf marked its folders: its own record, no marker."""
    folder.mkdir(parents=True)
    if command == "generate":
        (folder / "manifest.json").write_text(json.dumps({"format": "cf_hf-counterfactual-run"}))
        (folder / "shards").mkdir()
    elif command == "interpolate":
        (folder / "sweep.json").write_text(json.dumps({"alphas": []}))
        (folder / "alpha-0.5").mkdir()
    elif command == "demo":
        (folder / "results.json").write_text("{}")
        (folder / "seed-0").mkdir()
    else:
        (folder / ".cf_hf_verified.json").write_text(json.dumps({"files": []}))
        (folder / "README.md").write_text("# verified")
    return folder


@pytest.mark.parametrize("command", ["generate", "verify", "interpolate", "demo"])
def test_a_folder_written_before_the_marker_is_refused_with_the_marker_to_write(data, tmp_path, capsys, command):
    import subprocess

    folder = _earlier_output(tmp_path / "earlier", command)
    before = checksums(folder)
    line = one_line_error(capsys, _command_into(data, command, folder))
    assert f"holds a cf-hf {command} output written before cf_hf marked its folders" in line
    assert checksums(folder) == before
    marking = line.split("mark it with `", 1)[1].split("`", 1)[0]
    subprocess.run(marking, shell=True, check=True)  # what the message says to do, as the user would
    assert json.loads((folder / MARKER_NAME).read_text())["command"] == command


def test_an_output_dir_that_is_a_file_is_named(data, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    line = one_line_error(capsys, _evaluate_args(data, tmp_path / "file"))
    assert "is a file, not a folder" in line and "Not a directory" not in line


# -- 2. a resume under other settings ---------------------------------------------------------------


def test_ffr_results_are_not_resumed_under_other_settings(tmp_path):
    from dataclasses import asdict

    from cf_hf.world.ffr.experiment import RESULTS_FILE, FFRConfig, check_resumable

    before = FFRConfig(per_class=40, seeds=[0])
    (tmp_path / "config.json").write_text(json.dumps(asdict(before)))
    (tmp_path / RESULTS_FILE).write_text(json.dumps({"key": "seed=0 bias=0.95 signature=0.0 schedule=real loss=erm"}) + "\n")
    check_resumable(FFRConfig(per_class=40, seeds=[0, 1]), tmp_path)  # a larger grid resumes
    for changed in ({"per_class": 80}, {"epochs": 7}, {"batch_size": 8}, {"learning_rate": 1e-3}):
        with pytest.raises(ValueError, match=f"{next(iter(changed))}: "):
            check_resumable(FFRConfig(seeds=[0], **{"per_class": 40, **changed}), tmp_path)


def test_ffr_demo_refuses_a_folder_of_another_run_with_other_settings(tmp_path, capsys):
    claim_output_folder(tmp_path / "ffr", "ffr-demo", {"per_class": 40})
    (tmp_path / "ffr" / "results.jsonl").write_text("")
    line = one_line_error(capsys, ["ffr-demo", "--output_dir", str(tmp_path / "ffr"), "--per_class", "80"])
    assert "per_class: 40 -> 80" in line


# -- 3. push with another sweep's results ---------------------------------------------------------


def _perturbed_sweep(tiny_clip_dir: Path, folder: Path, seed: int) -> Path:
    import torch
    from transformers import CLIPModel, CLIPProcessor

    from cf_hf.interpolation import interpolate_sweep

    finetuned = CLIPModel.from_pretrained(tiny_clip_dir)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in finetuned.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    finetuned.save_pretrained(folder / "finetuned")
    CLIPProcessor.from_pretrained(tiny_clip_dir).save_pretrained(folder / "finetuned")
    interpolate_sweep(tiny_clip_dir, folder / "finetuned", [0.0, 0.5], folder / "sweep")
    return folder / "sweep"


def test_push_model_refuses_results_measured_on_another_sweep(tiny_clip_dir, tmp_path, capsys):
    pushed = _perturbed_sweep(tiny_clip_dir, tmp_path / "a", seed=1)
    other = _perturbed_sweep(tiny_clip_dir, tmp_path / "b", seed=2)
    results = tmp_path / "results.json"

    def write_results(sweep: Path) -> None:
        results.write_text(json.dumps({"schema_version": 1, "protocol": {}, "models": {
            "alpha=0.5": {"alpha": 0.5, "model": {"path": str(sweep / "alpha-0.5")},
                          "gender": {"max_skew": 0.1, "min_skew": -0.1, "ndkl": 0.01}}}}))

    write_results(other)
    argv = ["push", "model", str(pushed), "--repo_id", "org/cf-clip", "--results", str(results),
            "--base_model", "org/clip", "--dry_run"]
    line = one_line_error(capsys, argv)
    assert "α = 0.5 were measured on" in line and str(other / "alpha-0.5") in line
    write_results(pushed)
    assert main(argv) == 0


# -- 4. zero or negative training lengths ----------------------------------------------------------


@pytest.mark.parametrize("command, option, value", [
    ("train", "--num_train_epochs", "0"), ("train", "--max_steps", "0"), ("train-ba", "--num_train_epochs", "-1"),
    ("classify", "--num_train_epochs", "0"), ("compare", "--bias_alignment_epochs", "0"),
])
def test_a_training_length_of_zero_or_less_is_refused_before_any_work(data, tmp_path, capsys, command, option, value):
    argv = _command_into(data, command, tmp_path / "out")
    argv = [item for index, item in enumerate(argv) if item not in ("--max_steps", "--num_train_epochs")
            and argv[index - 1] not in ("--max_steps", "--num_train_epochs")]
    if command not in ("compare", "classify"):
        argv += ["--max_steps", "-1"] if option == "--num_train_epochs" else []
    line = one_line_error(capsys, argv + [option, value])
    assert option.lstrip("-") in line
    assert not (tmp_path / "out").exists()


# -- 5. a k that is the whole gallery -------------------------------------------------------------


def test_explore_refuses_a_k_that_is_the_gallery_and_defaults_below_it(data, tmp_path, capsys):
    base = ["explore", "--model", str(data["model"]), "--fairface", str(data["fairface"]), "--cache_dir", "none",
            "--quiet", "--check", "a doctor"]
    line = one_line_error(capsys, base + ["--k", "24"])
    assert "--k 24 is not below the size of the gallery" in line
    small = make_fairface(tmp_path / "small", n=10)
    assert main([*base[:3], "--fairface", str(small), *base[5:]]) == 0
    assert "MaxSkew@9" in capsys.readouterr().out


# -- 6. FairFace rows counted twice, labels nobody named -------------------------------------------


def test_fairface_refuses_duplicate_rows_naming_them(tmp_path):
    from cf_hf.evaluation import load_fairface

    root = make_fairface(tmp_path / "fairface", n=8)
    csv = root / "fairface_label_val.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([*lines, lines[3]]) + "\n")
    with pytest.raises(ValueError, match=r"lines 4 and 10: 'val/3.jpg'"):
        load_fairface(root)


def test_fairface_refuses_a_column_whose_labels_nobody_named(tmp_path, data, capsys):
    root = make_fairface(tmp_path / "fairface", n=8)
    csv = root / "fairface_label_val.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([lines[0] + ",skin_tone"] + [line + (",dark" if i % 2 else ",darkk")
                                                          for i, line in enumerate(lines[1:])]) + "\n")
    argv = _evaluate_args(data, tmp_path / "out", "--fairface_attributes", "gender", "skin_tone")
    argv[argv.index("--fairface") + 1] = str(root)
    line = one_line_error(capsys, argv)
    assert "'skin_tone' is not a FairFace attribute" in line and "'darkk'" in line


# -- 7. options out of range, refused at parse time ----------------------------------------------


OUT_OF_RANGE = {
    "verify --min_adherence 1.5": (["verify", "{root}", "--min_adherence", "1.5"], "--min_adherence=1.5"),
    "verify --max_context_difference -0.1": (["verify", "{root}", "--max_context_difference", "-0.1"],
                                             "--max_context_difference=-0.1"),
    "verify --max_duplicate_similarity 2": (["verify", "{root}", "--max_duplicate_similarity", "2"],
                                            "--max_duplicate_similarity=2.0"),
    "verify --test_size 1.5": (["verify", "{root}", "--test_size", "1.5"], "--test_size=1.5"),
    "generate --image_size 0": (["generate", "--output_dir", "{out}", "--image_size", "0"], "--image_size=0"),
    "generate --inpainting_steps 0": (["generate", "--output_dir", "{out}", "--inpainting_steps", "0"],
                                      "--inpainting_steps=0"),
    "generate --test_size 1.5": (["generate", "--output_dir", "{out}", "--test_size", "1.5"], "--test_size=1.5"),
    "interpolate --alphas inf": (["interpolate", "--original", "{model}", "--finetuned", "{model}", "--output_dir",
                                  "{out}", "--alphas", "inf", "--allow_extrapolation"], "not a finite number"),
    "interpolate --processor_from missing": (["interpolate", "--original", "{model}", "--finetuned", "{model}",
                                              "--output_dir", "{out}", "--processor_from", "{root}/missing"],
                                             "no such folder"),
    "ffr-demo --per_class -5": (["ffr-demo", "--output_dir", "{out}", "--per_class", "-5"], "--per_class=-5"),
    "evaluate --random_floor_queries -3": (["evaluate", "--model", "{model}", "--output_dir", "{out}",
                                            "--random_floor_queries", "-3"], "--random_floor_queries=-3"),
    "evaluate --k 0": (["evaluate", "--model", "{model}", "--output_dir", "{out}", "--k", "0"], "--k=0"),
    "explore --k -1": (["explore", "--model", "{model}", "--k", "-1"], "--k=-1"),
    "train-ba --attribute outside the gallery": (["train-ba", "--fairface", "{root}", "--output_dir", "{out}",
                                                  "--attribute", "religion"], "--attribute religion"),
}


@pytest.mark.parametrize("case", list(OUT_OF_RANGE))
def test_an_option_out_of_range_is_refused_before_any_work(data, tmp_path, capsys, case):
    argv, message = OUT_OF_RANGE[case]
    values = {"root": str(tmp_path), "out": str(tmp_path / "out"), "model": str(data["model"])}
    line = one_line_error(capsys, [item.format(**values) for item in argv])
    assert message in line
    assert not (tmp_path / "out").exists()


def test_balanced_training_data_has_no_stereotype_gap():
    from cf_hf.methods.ffr.evaluation import classification_metrics, majority_values

    labels, values = ["doctor", "doctor", "nurse", "nurse"], ["female", "male", "female", "male"]
    assert majority_values(labels, values) == {}
    metrics = classification_metrics(labels, labels, values, {})
    assert "stereotype_gap" not in metrics and metrics["mean_accuracy"] == 1.0
    assert majority_values(labels + ["doctor"], values + ["male"]) == {"doctor": "male"}


def test_a_prompt_longer_than_the_text_tower_reads_is_reported(tiny_clip_dir, caplog):
    from cf_hf.evaluation.embedding import EmbeddingConfig, EmbeddingEngine

    engine = EmbeddingEngine.from_pretrained(tiny_clip_dir, EmbeddingConfig(cache_dir=None, progress=False))
    engine.embed_texts(["a doctor " * 2000])
    assert "longer than the" in caplog.text and "cut to them" in caplog.text


# -- 8. corrupt or wrong-architecture weights -----------------------------------------------------


def _loading_argv(data, command: str, model: Path, output: Path) -> list[str]:
    fairface = str(data["fairface"])
    return {
        "evaluate": ["evaluate", "--model", str(model), "--fairface", fairface, "--concepts", "doctor", "--k", "6",
                     "--quiet", "--no_plots", "--output_dir", str(output)],
        "compare": ["compare", "--original", str(model), "--fairface", fairface, "--concepts", "doctor", "--k", "6",
                    "--quiet", "--no_plots", "--output_dir", str(output)],
        "explore": ["explore", "--model", str(model), "--fairface", fairface, "--cache_dir", "none", "--quiet",
                    "--check", "a doctor", "--k", "6"],
        "interpolate": ["interpolate", "--original", str(data["model"]), "--finetuned", str(model), "--output_dir",
                        str(output), "--alphas", "0.5"],
        "train-ba": ["train-ba", "--fairface", fairface, "--model_name_or_path", str(model), "--output_dir",
                     str(output), "--max_steps", "1", "--use_cpu", "--per_device_train_batch_size", "8",
                     "--queue_size", "16", "--quiet", "--eval_strategy", "no", "--early_stopping_patience", "0"],
        "classify": ["classify", "--real_dataset", fairface, "--model_name_or_path", str(model), "--output_dir",
                     str(output), "--num_train_epochs", "1", "--use_cpu"],
        "train": ["train", "--model_name_or_path", str(model), "--dataset", fairface, "--output_dir", str(output),
                  "--max_steps", "1", "--use_cpu"],
    }[command]


@pytest.mark.parametrize("broken", ["truncated", "random_bytes", "bert_config"])
@pytest.mark.parametrize("command", ["evaluate", "compare", "explore", "interpolate", "train-ba", "classify", "train"])
def test_corrupt_or_foreign_weights_are_one_line_naming_the_problem(data, tmp_path, capsys, command, broken):
    model = data["broken"][broken]
    line = one_line_error(capsys, _loading_argv(data, command, model, tmp_path / "out"))
    assert str(model) in line
    expected = {"truncated": "truncated or corrupt", "random_bytes": "truncated or corrupt", "bert_config": "'bert'"}
    assert expected[broken] in line


# -- 9. evaluate --sweep errors -------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["missing", "truncated_sweep_json", "deleted_member"])
def test_a_damaged_sweep_is_one_line(data, tmp_path, capsys, damage):
    from testing_utils.hub import build_sweep

    sweep = tmp_path / "missing-sweep"
    if damage != "missing":
        sweep = build_sweep(data["model"], tmp_path, alphas=(0.0, 1.0))
        if damage == "truncated_sweep_json":
            (sweep / "sweep.json").write_text((sweep / "sweep.json").read_text()[:20])
        else:
            shutil.rmtree(sweep / "alpha-1")
    argv = _evaluate_args(data, tmp_path / "out", "--sweep", str(sweep))
    assert str(sweep) in one_line_error(capsys, argv)


# -- 10. malformed data files ---------------------------------------------------------------------


@pytest.mark.parametrize("content", ["prompts: [unclosed", "- just\n- a list\n", "gender:\n  male: ['a {nope} man']\n"])
def test_a_malformed_biased_prompts_file_is_one_line(data, tmp_path, capsys, content):
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text(content)
    argv = ["compare", "--original", str(data["model"]), "--methods", "biased_prompts", "--biased_prompts_file",
            str(prompts), "--fairface", str(data["fairface"]), "--concepts", "doctor", "--k", "6", "--quiet",
            "--no_plots", "--output_dir", str(tmp_path / "out")]
    assert str(prompts) in one_line_error(capsys, argv)


@pytest.mark.parametrize("content", ["attributes: [unclosed", "attributes: 3\n",
                                     "prompt_template: 'a {nope} person'\nattributes:\n  gender: [man, woman]\n"])
def test_a_malformed_attribute_grid_file_is_one_line(tmp_path, capsys, content):
    grid = tmp_path / "grid.yaml"
    grid.write_text(content)
    argv = ["generate", "--output_dir", str(tmp_path / "run"), "--attribute_grid_file", str(grid)]
    assert str(grid) in one_line_error(capsys, argv)


# -- 11. push against an unreachable Hub ----------------------------------------------------------


@pytest.mark.parametrize("offline", [False, True])
def test_push_to_an_unreachable_or_offline_hub_is_one_line(tmp_path, capsys, monkeypatch, offline):
    from huggingface_hub import constants
    from testing_utils.hub import build_dataset_folder

    folder = build_dataset_folder(tmp_path / "dataset")
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    line = one_line_error(capsys, ["push", "dataset", str(folder), "--repo_id", "org/data"])
    assert ("offline" in line.lower()) if offline else ("127.0.0.1:9" in line)


# -- 12. a card that disagrees with its files; Ctrl-C ----------------------------------------------


def test_verify_names_a_card_whose_split_sizes_disagree_with_the_files(tmp_path, capsys):
    from testing_utils.hub import build_dataset_folder

    folder = build_dataset_folder(tmp_path / "dataset")
    card = (folder / "README.md").read_text()
    (folder / "README.md").write_text(card.replace(
        "license:", "dataset_info:\n  splits:\n  - name: train\n    num_bytes: 969\n    num_examples: 99\nlicense:", 1))
    line = one_line_error(capsys, ["verify", str(folder), "--world", "--output_dir", str(tmp_path / "out")])
    assert "train: card 99, files 6" in line


# -- 12. Ctrl-C ----------------------------------------------------------------------------------


def test_ctrl_c_in_training_is_one_line_naming_the_checkpoint_to_resume(tmp_path, capsys, monkeypatch):
    from cf_hf.cli import INTERRUPTED_STATUS, run_command
    from cf_hf.cli.command import interrupted_training

    (tmp_path / "checkpoint-3").mkdir()
    (tmp_path / "checkpoint-3" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-6").mkdir()  # the save Ctrl-C cut short

    class Interrupted:
        uses_diffusers = False

        def parse(self, argv):
            return argv

        def quiet(self, args):
            return True

        def run(self, args):
            with interrupted_training(tmp_path):
                raise KeyboardInterrupt

    monkeypatch.setattr("cf_hf.cli.load_command", lambda name: Interrupted())
    assert run_command("train", []) == INTERRUPTED_STATUS
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "checkpoint-3 is the last complete checkpoint" in err and "--resume_from_checkpoint last" in err


# -- 13. the galleries the demo writes -------------------------------------------------------------


def test_train_ba_reads_a_gallery_with_other_attribute_columns(data, tmp_path):
    root = make_fairface(tmp_path / "fairface", n=16)
    csv = root / "fairface_label_val.csv"
    csv.write_text(csv.read_text().replace("race", "skin_tone", 1))
    labels = tmp_path / "labels.yaml"
    labels.write_text("skin_tone: [White, Black, East Asian, Indian]\n")
    argv = ["train-ba", "--fairface", str(root), "--fairface_csv", str(csv), "--fairface_labels", str(labels),
            "--fairface_attributes", "gender", "skin_tone", "age", "--caption_template",
            "a photo of a {skin_tone} {gender}", "--model_name_or_path", str(data["model"]), "--output_dir",
            str(tmp_path / "out"), "--max_steps", "1", "--use_cpu", "--per_device_train_batch_size", "8",
            "--queue_size", "16", "--quiet", "--save_strategy", "no", "--eval_strategy", "no",
            "--early_stopping_patience", "0"]
    assert main(argv) == 0
    assert (tmp_path / "out" / "model.safetensors").is_file()


# -- 14. messages that name the real problem -------------------------------------------------------


def test_a_missing_original_is_named_as_a_missing_folder(data, tmp_path, capsys):
    line = one_line_error(capsys, ["compare", "--original", str(tmp_path / "no-such-clip"), "--fairface",
                                   str(data["fairface"]), "--output_dir", str(tmp_path / "out")])
    assert "no such local folder" in line and "Repo id must be" not in line
