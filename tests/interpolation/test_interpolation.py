"""WiSE-FT interpolation: endpoints, midpoint, dtypes, errors, the sweep folder and the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import CLIPModel, CLIPProcessor

from cf_hf.cli import main as cf_hf_main
from cf_hf.interpolation import (
    SWEEP_FILE,
    alpha_name,
    interpolate,
    interpolate_sweep,
    read_sweep,
)


@pytest.fixture(scope="module")
def endpoints(tiny_clip_dir, tmp_path_factory):
    """(original folder, fine-tuned folder): the tiny CLIP and a copy with every float weight moved."""
    original = CLIPModel.from_pretrained(tiny_clip_dir)
    finetuned = CLIPModel.from_pretrained(tiny_clip_dir)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in finetuned.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    folder = tmp_path_factory.mktemp("finetuned")
    finetuned.save_pretrained(folder)
    CLIPProcessor.from_pretrained(tiny_clip_dir).save_pretrained(folder)
    return tiny_clip_dir, folder, original.state_dict(), finetuned.state_dict()


def _loaded_state(folder):
    return CLIPModel.from_pretrained(folder).state_dict()


def test_alpha_zero_and_one_reproduce_the_endpoints_exactly(endpoints, tmp_path):
    original_dir, finetuned_dir, original, finetuned = endpoints
    interpolate_sweep(original_dir, finetuned_dir, [0, 1], tmp_path)
    for alpha, expected in ((0, original), (1, finetuned)):
        state = _loaded_state(tmp_path / alpha_name(alpha))
        assert all(torch.equal(state[name], expected[name]) for name in expected)


def test_alpha_half_is_the_midpoint(endpoints):
    _, _, original, finetuned = endpoints
    mixed = interpolate(original, finetuned, 0.5)
    for name, tensor in original.items():
        if tensor.is_floating_point():
            torch.testing.assert_close(mixed[name], (tensor + finetuned[name]) / 2)


def test_models_in_give_a_new_model_out_and_leave_the_inputs_alone(endpoints, tiny_clip_dir):
    _, finetuned_dir, original, _ = endpoints
    model_a, model_b = CLIPModel.from_pretrained(tiny_clip_dir), CLIPModel.from_pretrained(finetuned_dir)
    mixed = interpolate(model_a, model_b, 0.25)
    assert isinstance(mixed, CLIPModel) and mixed is not model_a
    assert all(torch.equal(model_a.state_dict()[name], original[name]) for name in original)
    weight = "text_projection.weight"
    expected = 0.75 * model_a.state_dict()[weight] + 0.25 * model_b.state_dict()[weight]
    torch.testing.assert_close(mixed.state_dict()[weight], expected)


def test_arithmetic_is_float32_and_the_result_keeps_the_original_dtype():
    original = {"w": torch.tensor([1.0, 3.0], dtype=torch.bfloat16)}
    finetuned = {"w": torch.tensor([2.0, 4.0], dtype=torch.float32)}
    mixed = interpolate(original, finetuned, 0.5)
    assert mixed["w"].dtype == torch.bfloat16
    assert mixed["w"].tolist() == [1.5, 3.5]


def test_non_float_tensors_are_copied_when_equal_and_refused_when_not():
    ids = torch.arange(4)
    mixed = interpolate({"ids": ids, "w": torch.ones(2)}, {"ids": ids.clone(), "w": torch.zeros(2)}, 0.5)
    assert torch.equal(mixed["ids"], ids)
    with pytest.raises(ValueError, match="non-floating tensor 'ids'"):
        interpolate({"ids": ids}, {"ids": ids + 1}, 0.5)


def test_mismatched_keys_and_shapes_are_listed():
    original = {"a": torch.zeros(2), "b": torch.zeros(3), "c": torch.zeros(1)}
    finetuned = {"a": torch.zeros(2), "b": torch.zeros(4), "d": torch.zeros(1)}
    with pytest.raises(ValueError) as error:
        interpolate(original, finetuned, 0.5)
    message = str(error.value)
    assert "only in the original: c" in message
    assert "only in the fine-tuned: d" in message
    assert "shape of b: original [3] vs fine-tuned [4]" in message


def test_alpha_outside_unit_interval_needs_allow_extrapolation():
    original, finetuned = {"w": torch.zeros(1)}, {"w": torch.ones(1)}
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        interpolate(original, finetuned, 1.5)
    assert interpolate(original, finetuned, 1.5, allow_extrapolation=True)["w"].item() == 1.5


def test_duplicate_alphas_are_refused(endpoints, tmp_path):
    original_dir, finetuned_dir, _, _ = endpoints
    with pytest.raises(ValueError, match="duplicate alphas \\['alpha-0.5'\\]"):
        interpolate_sweep(original_dir, finetuned_dir, [0.5, 0.50, 1], tmp_path)


def test_sweep_writes_the_folder_layout_with_config_and_processor(endpoints, tmp_path):
    original_dir, finetuned_dir, _, _ = endpoints
    sweep = interpolate_sweep(original_dir, finetuned_dir, [0, 0.25, 1], tmp_path)
    expected = [{"alpha": 0.0, "path": "alpha-0"}, {"alpha": 0.25, "path": "alpha-0.25"},
                {"alpha": 1.0, "path": "alpha-1"}]
    assert sweep["alphas"] == expected
    assert sweep["checkpoints"] == {"0": "alpha-0", "0.25": "alpha-0.25", "1": "alpha-1"}
    written = json.loads((tmp_path / SWEEP_FILE).read_text())
    assert written["alphas"] == expected and written["original"] == str(original_dir)
    folder = read_sweep(tmp_path)["checkpoints"]["0.25"]
    assert json.loads((folder / "interpolation.json").read_text())["alpha"] == 0.25
    processor = CLIPProcessor.from_pretrained(folder)
    assert processor.tokenizer("a doctor")["input_ids"] == CLIPProcessor.from_pretrained(
        original_dir
    ).tokenizer("a doctor")["input_ids"]


def test_sweep_refuses_to_overwrite_unless_asked(endpoints, tmp_path):
    original_dir, finetuned_dir, _, _ = endpoints
    interpolate_sweep(original_dir, finetuned_dir, [0.5], tmp_path)
    with pytest.raises(FileExistsError, match="overwrite"):
        interpolate_sweep(original_dir, finetuned_dir, [0.5], tmp_path)
    interpolate_sweep(original_dir, finetuned_dir, [0.5], tmp_path, overwrite=True)


def test_sweep_refuses_a_lora_adapter_and_a_folder_that_is_not_a_checkpoint(endpoints, tmp_path):
    original_dir, _, _, _ = endpoints
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(ValueError, match="LoRA adapter: merge it"):
        interpolate_sweep(original_dir, adapter, [0.5], tmp_path / "out")
    with pytest.raises(ValueError, match="no config.json"):
        interpolate_sweep(original_dir, tmp_path, [0.5], tmp_path / "out")
    with pytest.raises(ValueError, match="neither a checkpoint folder nor a Hub repo id"):
        interpolate_sweep(original_dir, tmp_path / "missing", [0.5], tmp_path / "out")


def test_lora_merged_checkpoints_interpolate(tiny_clip_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    base = CLIPModel.from_pretrained(tiny_clip_dir)
    config = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    merged = get_peft_model(CLIPModel.from_pretrained(tiny_clip_dir), config).merge_and_unload()
    merged.save_pretrained(tmp_path / "merged")
    interpolate_sweep(tiny_clip_dir, tmp_path / "merged", [0.5], tmp_path / "sweep")
    state = _loaded_state(tmp_path / "sweep" / "alpha-0.5")
    expected = interpolate(base.state_dict(), merged.state_dict(), 0.5)
    assert all(torch.equal(state[name], expected[name]) for name in expected)
    name = "vision_model.encoder.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(state[name], base.state_dict()[name])


def test_cli_writes_a_sweep(endpoints, tmp_path, capsys):
    original_dir, finetuned_dir, _, _ = endpoints
    argv = ["--original", str(original_dir), "--finetuned", str(finetuned_dir),
            "--alphas", "0", "0.5", "1", "--output_dir", str(tmp_path)]
    assert cf_hf_main(["interpolate", *argv]) == 0
    assert list(read_sweep(tmp_path)["checkpoints"]) == ["0", "0.5", "1"]
    assert "alpha=0.5" in capsys.readouterr().out


def test_the_evaluation_harness_reads_the_sweep(endpoints, tmp_path):
    from cf_hf.interpolation import load_sweep

    original_dir, finetuned_dir, _, _ = endpoints
    interpolate_sweep(original_dir, finetuned_dir, [0, 0.5], tmp_path)
    folders, alphas = load_sweep(tmp_path)
    assert alphas == {"alpha=0": 0.0, "alpha=0.5": 0.5}
    assert folders["alpha=0.5"] == tmp_path / "alpha-0.5"


def test_cli_reports_bad_alphas_in_one_line(endpoints, tmp_path, capsys):
    original_dir, finetuned_dir, _, _ = endpoints
    argv = ["--original", str(original_dir), "--finetuned", str(finetuned_dir),
            "--alphas", "0.5", "0.5", "--output_dir", str(tmp_path)]
    assert cf_hf_main(["interpolate", *argv]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("cf-hf interpolate: error: duplicate alphas")


def _with_hub_position_ids(source, folder):
    """A copy of checkpoint `source` whose model.safetensors also holds the two `position_ids`
    tensors the Hub's openai/clip-vit-base-patch32 file carries (int64, [1, n]); transformers
    registers them as non-persistent buffers, so no checkpoint saved today has them."""
    import shutil

    from safetensors.torch import load_file, save_file
    from transformers import CLIPConfig

    shutil.copytree(source, folder)
    config = CLIPConfig.from_pretrained(folder)
    vision = config.vision_config
    tensors = load_file(folder / "model.safetensors")
    tensors["text_model.embeddings.position_ids"] = torch.arange(
        config.text_config.max_position_embeddings).unsqueeze(0)
    tensors["vision_model.embeddings.position_ids"] = torch.arange(
        (vision.image_size // vision.patch_size) ** 2 + 1).unsqueeze(0)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def test_an_original_with_the_hubs_position_ids_interpolates(endpoints, tmp_path):
    original_dir, finetuned_dir, original, _ = endpoints
    hub_original = _with_hub_position_ids(original_dir, tmp_path / "hub-original")
    sweep = interpolate_sweep(hub_original, finetuned_dir, [0, 0.5], tmp_path / "sweep")
    assert sweep["ignored_keys"] == ["text_model.embeddings.position_ids", "vision_model.embeddings.position_ids"]
    model, info = CLIPModel.from_pretrained(tmp_path / "sweep" / "alpha-0", output_loading_info=True)
    assert all(not keys for keys in info.values()), info  # no missing, unexpected or mismatched key
    state = model.state_dict()
    assert all(torch.equal(state[name], original[name]) for name in original)


def test_a_second_run_adds_its_alphas_to_the_existing_sweep(endpoints, tmp_path):
    from cf_hf.interpolation import load_sweep
    from hub_scripts.push_model import find_checkpoints

    original_dir, finetuned_dir, _, _ = endpoints
    interpolate_sweep(original_dir, finetuned_dir, [0, 1], tmp_path)
    sweep = interpolate_sweep(original_dir, finetuned_dir, [0.3], tmp_path)
    assert [entry["alpha"] for entry in sweep["alphas"]] == [0.0, 0.3, 1.0]
    assert json.loads((tmp_path / SWEEP_FILE).read_text())["alphas"] == sweep["alphas"]
    # Every reader of the sweep sees the three checkpoints.
    assert list(read_sweep(tmp_path)["checkpoints"]) == ["0", "0.3", "1"]
    assert list(load_sweep(tmp_path)[1].values()) == [0.0, 0.3, 1.0]
    assert sorted(find_checkpoints(tmp_path)) == [0.0, 0.3, 1.0]


def test_a_run_with_other_endpoints_is_refused_and_leaves_the_sweep_alone(endpoints, tmp_path):
    original_dir, finetuned_dir, _, _ = endpoints
    interpolate_sweep(original_dir, finetuned_dir, [0, 1], tmp_path / "sweep")
    before = (tmp_path / "sweep" / SWEEP_FILE).read_text()
    # Another fine-tuned model in a folder of the same name: the weights, not the names, decide.
    other = tmp_path / "other"
    model = CLIPModel.from_pretrained(finetuned_dir)
    with torch.no_grad():
        model.text_projection.weight.add_(1.0)
    model.save_pretrained(other)
    with pytest.raises(ValueError, match="fine-tuned: the sweep has .*, this run has .*other") as error:
        interpolate_sweep(original_dir, other, [0.5], tmp_path / "sweep")
    assert "original" not in str(error.value).split("\n", 1)[1]  # only the difference is listed
    assert (tmp_path / "sweep" / SWEEP_FILE).read_text() == before
    assert not (tmp_path / "sweep" / "alpha-0.5").exists()


def test_alphas_left_out_of_an_older_sweep_json_are_taken_back(endpoints, tmp_path):
    """A sweep.json rewritten with only the last run's α (as older versions did) while the earlier
    α's folders are still there: the next run lists them again."""
    original_dir, finetuned_dir, _, _ = endpoints
    interpolate_sweep(original_dir, finetuned_dir, [0, 0.5], tmp_path)
    old_fields = ("alpha", "original", "finetuned")
    for folder in ("alpha-0", "alpha-0.5"):  # the records older versions wrote: names, no fingerprints
        record = json.loads((tmp_path / folder / "interpolation.json").read_text())
        (tmp_path / folder / "interpolation.json").write_text(json.dumps({key: record[key] for key in old_fields}))
    (tmp_path / SWEEP_FILE).write_text(json.dumps({
        "original": str(original_dir), "finetuned": str(finetuned_dir),
        "alphas": [{"alpha": 0.5, "path": "alpha-0.5"}], "checkpoints": {"0.5": "alpha-0.5"}}))
    sweep = interpolate_sweep(original_dir, finetuned_dir, [1], tmp_path)
    assert [entry["alpha"] for entry in sweep["alphas"]] == [0.0, 0.5, 1.0]


def test_a_tower_the_fine_tuning_left_frozen_is_the_same_model_at_every_alpha(tiny_clip_dir, tmp_path):
    from cf_hf.evaluation.embedding import EmbeddingConfig, EmbeddingEngine

    finetuned = CLIPModel.from_pretrained(tiny_clip_dir)
    with torch.no_grad():
        for name, parameter in finetuned.named_parameters():
            if not name.startswith(("text_model.", "text_projection.")):
                parameter.add_(0.01)
    finetuned.save_pretrained(tmp_path / "finetuned")
    CLIPProcessor.from_pretrained(tiny_clip_dir).save_pretrained(tmp_path / "finetuned")
    original = CLIPModel.from_pretrained(tiny_clip_dir).state_dict()
    text = [name for name in original if name.startswith(("text_model.", "text_projection."))]
    alphas = [0.3, 0.7, 0.95]
    # The plain formula misses these weights by a rounding step: without the copy the test fails.
    assert any(
        not torch.equal((1 - alpha) * original[name] + alpha * original[name], original[name])
        for alpha in alphas for name in text if original[name].is_floating_point()
    )
    interpolate_sweep(tiny_clip_dir, tmp_path / "finetuned", alphas, tmp_path / "sweep")
    config = EmbeddingConfig(progress=False, cache_dir=None)
    reference = EmbeddingEngine.from_pretrained(tiny_clip_dir, config=config)
    for alpha in alphas:
        folder = tmp_path / "sweep" / alpha_name(alpha)
        state = _loaded_state(folder)
        assert all(torch.equal(state[name], original[name]) for name in text)
        assert not torch.equal(state["visual_projection.weight"], original["visual_projection.weight"])
        # ... so the evaluation reuses the original's text embeddings for every alpha.
        engine = EmbeddingEngine.from_pretrained(folder, config=config)
        assert engine.text_fingerprint == reference.text_fingerprint
        assert engine.image_fingerprint != reference.image_fingerprint
