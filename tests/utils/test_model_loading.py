"""Model-loading errors name the model and say why: no such local folder, not a model folder, not
cached while offline, gated, not on the Hub. A run whose model fails to load leaves nothing behind."""

from __future__ import annotations

import httpx2
import pytest
from huggingface_hub import constants
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
from testing_utils.generation import one_torch_thread, tiny_cli_args, tiny_components_dir, write_tiny_grid  # noqa: F401

from cf_hf.cli import main
from cf_hf.generation.base_images import DiffusersTextToImage
from cf_hf.generation.captions import LLMCaptionWriter
from cf_hf.generation.masks import SegformerSegmenter
from cf_hf.utils.model_loading import ModelLoadError, check_model_source

UNCACHED_HUB_ID = "cf-hf-tests/never-downloaded"


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def _hub_error(kind, status: int, model_id: str):
    """The error `huggingface_hub` raises for an HTTP status, wrapped in the `OSError` that
    `transformers` raises from it."""
    url = f"{constants.ENDPOINT}/{model_id}/resolve/main/config.json"
    response = httpx2.Response(status, request=httpx2.Request("GET", url))
    try:
        raise kind(f"{status} Client Error for url {url}", response=response)
    except kind as cause:
        try:
            raise OSError(f"{model_id} is not a local folder and is not a valid model identifier") from cause
        except OSError as error:
            return error


def test_a_typo_in_a_local_path_says_no_such_folder_not_no_connection(tmp_path, offline):
    missing = tmp_path / "modles" / "sdxl"
    with pytest.raises(ModelLoadError, match=f"text-to-image model: no such local folder: '{missing}'") as caught:
        DiffusersTextToImage(str(missing)).pipeline  # noqa: B018
    assert "huggingface.co" not in str(caught.value)
    with pytest.raises(ModelLoadError, match="segmentation model: no such local folder: './no/such/segformer'"):
        SegformerSegmenter("./no/such/segformer").label_ids  # noqa: B018
    with pytest.raises(ModelLoadError, match="caption model: no such local folder: '~/no-such-llm'"):
        LLMCaptionWriter("~/no-such-llm").pipeline  # noqa: B018


def test_a_folder_without_a_config_is_not_a_model_folder(tmp_path, offline):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelLoadError, match=r"is not a model folder: it has no config.json or model_index.json \(it holds notes.txt\)"):
        SegformerSegmenter(str(tmp_path)).label_ids  # noqa: B018
    with pytest.raises(ModelLoadError, match="is not a model folder"):
        DiffusersTextToImage(str(tmp_path)).pipeline  # noqa: B018


def test_an_uncached_hub_id_offline_says_offline(offline):
    expected = rf"'{UNCACHED_HUB_ID}' is not in the local cache and the Hub is offline \(HF_HUB_OFFLINE=1\)"
    with pytest.raises(ModelLoadError, match=expected) as caught:
        DiffusersTextToImage(UNCACHED_HUB_ID).pipeline  # noqa: B018
    assert caught.value.model_id == UNCACHED_HUB_ID
    with pytest.raises(ModelLoadError, match=expected):
        SegformerSegmenter(UNCACHED_HUB_ID).label_ids  # noqa: B018
    with pytest.raises(ModelLoadError, match=expected):  # checked before any weights are read
        check_model_source(UNCACHED_HUB_ID, role="text-to-image model")


def test_a_gated_model_says_accept_the_licence_and_log_in(monkeypatch):
    import transformers

    def gated(model_id, *args, **kwargs):
        raise _hub_error(GatedRepoError, 403, model_id)

    monkeypatch.setattr(transformers.AutoModelForSemanticSegmentation, "from_pretrained", gated)
    with pytest.raises(ModelLoadError, match=r"'org/gated-model' is gated: accept its licence on https://huggingface.co/org/gated-model and log in \(`hf auth login`"):
        SegformerSegmenter("org/gated-model").label_ids  # noqa: B018


def test_a_model_that_is_not_on_the_hub_says_so(monkeypatch):
    import transformers

    def missing(model_id, *args, **kwargs):
        raise _hub_error(RepositoryNotFoundError, 404, model_id)

    monkeypatch.setattr(transformers.AutoModelForSemanticSegmentation, "from_pretrained", missing)
    with pytest.raises(ModelLoadError, match=r"'org/no-such-model' is not a model on the Hub \(no local folder 'org/no-such-model' either\); if it is private, log in"):
        SegformerSegmenter("org/no-such-model").label_ids  # noqa: B018


def test_a_clip_checkpoint_typo_names_the_folder(tmp_path, offline):
    from cf_hf.evaluation.embedding import EmbeddingEngine

    with pytest.raises(ModelLoadError, match="CLIP checkpoint: no such local folder"):
        EmbeddingEngine.from_pretrained(tmp_path / "no-such-checkpoint")


@pytest.mark.usefixtures("one_torch_thread")
def test_a_failed_model_load_leaves_no_run_and_the_corrected_rerun_needs_no_resume(tmp_path, capsys):
    root = tiny_components_dir()
    grid = write_tiny_grid(tmp_path / "grid.yaml")
    run = tmp_path / "run"
    small = ["--concepts", "doctor", "--captions_per_concept", "1", "--decorators_per_caption", "1", "--no_export"]
    typo = tiny_cli_args(root, run, grid, *small, "--text_to_image_model", str(root / "text_to_imgae"))
    assert main(typo) == 2
    error = capsys.readouterr().err
    assert f"text-to-image model: no such local folder: '{root / 'text_to_imgae'}'" in error
    assert "(set with --text_to_image_model)" in error
    assert not (run / "manifest.json").exists()
    assert main(tiny_cli_args(root, run, grid, *small)) == 0


def test_training_names_a_missing_clip_folder(tmp_path, offline):
    from testing_utils.training import make_counterfactual_dataset

    from cf_hf.methods.counterfactual.trainer import CounterfactualTrainingArguments, train

    args = CounterfactualTrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none")
    with pytest.raises(ModelLoadError, match="CLIP model: no such local folder: './no-such-clip'"):
        train("./no-such-clip", make_counterfactual_dataset(num_groups=2, members=2), args)


def test_an_uncached_hub_checkpoint_for_interpolation_says_offline(tmp_path, tiny_clip_dir, offline):
    from cf_hf.interpolation import interpolate_sweep

    with pytest.raises(ModelLoadError, match=f"fine-tuned checkpoint '{UNCACHED_HUB_ID}' is not in the local cache and the Hub is offline"):
        interpolate_sweep(tiny_clip_dir, UNCACHED_HUB_ID, alphas=[0.5], output_dir=tmp_path / "sweep")
