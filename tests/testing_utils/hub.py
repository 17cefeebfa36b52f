"""Builders for the Hub tests: a tiny counterfactual dataset folder, a tiny CF_alpha sweep, and the
settings that point the in-process `huggingface_hub` client at the test server."""

from __future__ import annotations

import io
from pathlib import Path

TOKEN = "hf_cfhf_test_token_not_a_secret"
CONCEPTS = ["doctor", "nurse"]
GENDERS = ["female", "male"]
DATASET_CARD = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*.parquet
license: cc-by-4.0
task_categories:
- zero-shot-image-classification
---

# They're all doctors (tiny test copy)

Counterfactual images: every image of one `group_id` shows the same scene with a different person.
"""


def point_client_at(monkeypatch, server, token: str | None = TOKEN) -> None:
    """Make this process's `huggingface_hub` talk to `server` (its constants are read at import)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(Path(server.store.root) / "no-token-file"))
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    if token is None:
        monkeypatch.delenv("HF_TOKEN", raising=False)
    else:
        monkeypatch.setenv("HF_TOKEN", token)


def build_dataset_folder(folder: Path, with_group_id: bool = True) -> Path:
    """A publishable dataset folder in the contract schema: 2 groups x (1 base + 2 counterfactuals)."""
    from datasets import ClassLabel, Dataset, Features, Image, Value
    from PIL import Image as PILImage

    rows = {"image": [], "caption": [], "concept": [], "group_id": [], "is_base": [], "gender": [],
            "seed": [], "mask_area": []}
    for group_id, concept in enumerate(CONCEPTS):
        for member in range(3):
            buffer = io.BytesIO()
            PILImage.new("RGB", (8, 8), (40 * member, 100 + group_id, 7)).save(buffer, format="PNG")
            rows["image"].append({"bytes": buffer.getvalue(), "path": None})
            rows["caption"].append(f"A {concept} at work in a bright room")
            rows["concept"].append(group_id)
            rows["group_id"].append(f"group-{group_id}")
            rows["is_base"].append(member == 0)
            rows["gender"].append(None if member == 0 else member - 1)
            rows["seed"].append(1000 * group_id + member)
            rows["mask_area"].append(0.0 if member == 0 else 0.25)
    features = Features({
        "image": Image(), "caption": Value("string"), "concept": ClassLabel(names=CONCEPTS),
        "group_id": Value("string"), "is_base": Value("bool"), "gender": ClassLabel(names=GENDERS),
        "seed": Value("int64"), "mask_area": Value("float32"),
    })
    if not with_group_id:
        del rows["group_id"], features["group_id"]
    dataset = Dataset.from_dict(rows, features=features)
    (folder / "data").mkdir(parents=True)
    dataset.to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    (folder / "README.md").write_text(DATASET_CARD)
    return folder


def build_sweep(tiny_clip_dir: Path, folder: Path, alphas=(0.0, 0.5, 1.0)) -> Path:
    """An interpolation sweep between the tiny CLIP and a perturbed copy of it."""
    import torch
    from transformers import CLIPModel, CLIPProcessor

    from cf_hf.interpolation import interpolate_sweep

    finetuned = CLIPModel.from_pretrained(tiny_clip_dir)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for parameter in finetuned.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    finetuned.save_pretrained(folder / "finetuned")
    CLIPProcessor.from_pretrained(tiny_clip_dir).save_pretrained(folder / "finetuned")
    interpolate_sweep(tiny_clip_dir, folder / "finetuned", alphas, folder / "sweep")
    return folder / "sweep"
