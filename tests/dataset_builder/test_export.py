"""The dataset export on real runs of the tiny models: it never deletes what cf_hf did not write,
re-exports its own run in place, and its card names cf_hf and the licences of the run's models."""

from __future__ import annotations

import json
import shutil

import datasets
import pytest
import yaml
from testing_utils.generation import (
    IMAGE_SIZE,
    one_torch_thread,  # noqa: F401 (a fixture, used by name below)
    tiny_cli_args,
    tiny_components,
    tiny_components_dir,
    tiny_config,
    write_tiny_grid,
)

from cf_hf import __version__
from cf_hf.cli import main
from cf_hf.concepts import load_concepts
from cf_hf.generation import generate
from cf_hf.generation.base_images import DEFAULT_TEXT_TO_IMAGE_MODEL, DiffusersTextToImage
from cf_hf.generation.inpainting import DEFAULT_INPAINTING_MODEL, DiffusersInpainter
from cf_hf.generation.interfaces import component_provenance
from cf_hf.generation.masks import DEFAULT_SEGMENTATION_MODEL, SegformerSegmenter
from dataset_builder import ExportFolderError, export_dataset
from dataset_builder.export import EXPORT_RECORD, run_licenses

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL_RUN = {"captions_per_concept": 1, "decorators_per_caption": 2, "appearances_per_base": 1, "shard_size": 2}
LOCAL_MODEL_LICENSE = "apache-2.0"


def _small_config():
    return tiny_config(concepts=load_concepts(names=["doctor"]), **SMALL_RUN)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """A run of local model folders; the text-to-image folder has a model card naming its licence."""
    root = tmp_path_factory.mktemp("local")
    text_to_image = shutil.copytree(tiny_components_dir() / "text_to_image", root / "text_to_image")
    (text_to_image / "README.md").write_text(f"---\nlicense: {LOCAL_MODEL_LICENSE}\n---\n# A tiny model\n")
    components = tiny_components(tiny_components_dir())
    components["text_to_image"] = DiffusersTextToImage(str(text_to_image), height=IMAGE_SIZE, width=IMAGE_SIZE)
    generate(_small_config(), **components, output_dir=root / "run", show_progress=False)
    return root / "run"


@pytest.fixture(scope="module")
def default_models_run(tmp_path_factory):
    """A run whose components carry the default models' ids (the tiny pipelines stand in for them)."""
    tiny = tiny_components(tiny_components_dir())
    tiny["segmenter"].label_ids  # noqa: B018 (loads the tiny segmenter)
    components = {
        "caption_writer": tiny["caption_writer"],
        "text_to_image": DiffusersTextToImage(DEFAULT_TEXT_TO_IMAGE_MODEL, pipeline=tiny["text_to_image"].pipeline,
                                              height=IMAGE_SIZE, width=IMAGE_SIZE),
        "segmenter": SegformerSegmenter(DEFAULT_SEGMENTATION_MODEL, model=tiny["segmenter"]._model,
                                        image_processor=tiny["segmenter"]._image_processor),
        "inpainter": DiffusersInpainter(DEFAULT_INPAINTING_MODEL, pipeline=tiny["inpainter"].pipeline,
                                        num_inference_steps=2, strength=1.0, guidance_scale=0.0),
    }  # fmt: skip
    run = tmp_path_factory.mktemp("defaults") / "run"
    generate(_small_config(), **components, output_dir=run, show_progress=False)
    return run


def _card(folder) -> tuple[dict, str]:
    text = (folder / "README.md").read_text()
    _, header, body = text.split("---\n", 2)
    return yaml.safe_load(header), body


def _user_files(folder) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    files = {folder / "README.md": "my own notes", folder / "data" / "mine.csv": "a,b\n1,2\n"}
    for path, text in files.items():
        path.write_text(text)
    return files


def test_generate_refuses_an_export_folder_holding_the_users_files(tmp_path, capsys):
    files = _user_files(tmp_path / "mine")
    (tmp_path / "mine" / "README.md").rename(tmp_path / "mine" / "NOTES.md")
    files = {tmp_path / "mine" / "NOTES.md" if path.name == "README.md" else path: text for path, text in files.items()}
    grid = write_tiny_grid(tmp_path / "grid.yaml")
    args = tiny_cli_args(tiny_components_dir(), tmp_path / "run", grid, "--template_captions", "--concepts", "doctor",
                         "--captions_per_concept", "1", "--decorators_per_caption", "1",
                         "--export_dir", str(tmp_path / "mine"))  # fmt: skip
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "is not empty" in error and "holds no cf_hf export" in error and "--overwrite" in error
    assert "rerun with --resume" in error
    assert all(path.read_text() == text for path, text in files.items())


def test_overwrite_never_deletes_or_replaces_a_file_cf_hf_did_not_write(local_run, tmp_path):
    files = _user_files(tmp_path / "mine")
    with pytest.raises(ExportFolderError, match="holds README.md, which cf_hf did not write"):
        export_dataset(local_run, tmp_path / "mine", overwrite=True)
    assert all(path.read_text() == text for path, text in files.items())

    (tmp_path / "mine" / "README.md").rename(tmp_path / "mine" / "NOTES.md")
    export_dataset(local_run, tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "NOTES.md").read_text() == "my own notes"
    assert (tmp_path / "mine" / "data" / "mine.csv").read_text() == "a,b\n1,2\n"
    assert len(datasets.load_dataset(str(tmp_path / "mine"))["train"]) > 0


def test_exporting_the_same_run_again_replaces_only_its_own_files(local_run, tmp_path):
    folder = export_dataset(local_run, tmp_path / "dataset", test_size=0.0)
    (folder / "LICENSE").write_text("my licence")
    export_dataset(local_run, folder, test_size=0.5)  # same run, other split: no overwrite needed
    assert (folder / "LICENSE").read_text() == "my licence"
    record = json.loads((folder / EXPORT_RECORD).read_text())
    written = {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}
    assert written == set(record["files"]) | {"LICENSE", EXPORT_RECORD}
    assert set(datasets.load_dataset(str(folder))) == {"train", "test"}


def test_the_export_of_another_run_is_replaced_only_with_overwrite(local_run, default_models_run, tmp_path):
    folder = export_dataset(local_run, tmp_path / "dataset")
    before = {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    with pytest.raises(ExportFolderError, match="holds the export of another run.*--overwrite"):
        export_dataset(default_models_run, folder)
    assert {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()} == before
    export_dataset(default_models_run, folder, overwrite=True)
    fingerprint = json.loads((default_models_run / "manifest.json").read_text())["fingerprint"]
    assert json.loads((folder / EXPORT_RECORD).read_text())["run_fingerprint"] == fingerprint
    assert f"Run fingerprint `{fingerprint}`" in (folder / "README.md").read_text()


def test_an_edited_card_is_replaced_only_with_overwrite(local_run, tmp_path):
    folder = export_dataset(local_run, tmp_path / "dataset")
    (folder / "README.md").write_text((folder / "README.md").read_text() + "\nMy own paragraph.\n")
    with pytest.raises(ExportFolderError, match="README.md changed since cf_hf exported it"):
        export_dataset(local_run, folder)
    assert "My own paragraph." in (folder / "README.md").read_text()
    export_dataset(local_run, folder, overwrite=True)
    assert "My own paragraph." not in (folder / "README.md").read_text()


def test_the_card_names_cf_hf_by_its_version_not_a_placeholder_link(local_run, tmp_path):
    _, body = _card(export_dataset(local_run, tmp_path / "dataset"))
    assert f"cf_hf (version {__version__}) following" in body
    assert "https://github.com/)" not in body


def test_the_card_licence_is_that_of_the_runs_models(default_models_run, tmp_path):
    header, body = _card(export_dataset(default_models_run, tmp_path / "dataset"))
    assert header["license"] == ["other", "openrail++"]
    assert header["license_name"] == "sai-nc-community"
    assert f"| base images | `{DEFAULT_TEXT_TO_IMAGE_MODEL}` | `other` (sai-nc-community) |" in body
    assert f"| counterfactuals | `{DEFAULT_INPAINTING_MODEL}` | `openrail++` |" in body
    assert f"| person masks | `{DEFAULT_SEGMENTATION_MODEL}` | `mit` |" in body
    assert "| captions | templates | — (no pretrained model) |" in body


def test_a_local_model_folder_gives_the_licence_of_its_own_card_or_unknown(local_run, tmp_path):
    header, body = _card(export_dataset(local_run, tmp_path / "dataset"))
    assert header["license"] == [LOCAL_MODEL_LICENSE, "unknown"]
    assert "license_name" not in header
    assert f"| counterfactuals | `{tiny_components_dir() / 'inpainting'}` | unknown — check the model's card |" in body
    assert "sdxl-turbo" not in body


def test_fast_inpainting_with_sdxl_turbo_has_the_one_licence_of_sdxl_turbo():
    text_to_image = DiffusersTextToImage(DEFAULT_TEXT_TO_IMAGE_MODEL)
    inpainter = DiffusersInpainter.from_text_to_image(text_to_image)
    components = {"text_to_image": component_provenance(text_to_image), "inpainter": component_provenance(inpainter)}
    header, rows = run_licenses(components)
    assert header == {"license": "other", "license_name": "sai-nc-community"}
    assert [row[0] for row in rows] == ["base images", "counterfactuals"]


def test_a_dataset_push_of_an_export_leaves_out_the_exports_own_record(local_run, tmp_path):
    from dataset_builder.export import EXPORT_RECORD
    from hub_scripts.push_dataset import plan_dataset_push

    folder = export_dataset(local_run, tmp_path / "dataset", test_size=0.0)
    assert (folder / EXPORT_RECORD).is_file()
    (push,) = plan_dataset_push(folder, "org/they-are-all-doctors")
    files = push.files()
    assert "README.md" in files and any(name.startswith("data/") for name in files)
    assert EXPORT_RECORD not in files
