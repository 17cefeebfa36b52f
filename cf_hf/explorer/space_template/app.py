"""The retrieval explorer as a Hugging Face Space, written by `cf-hf push explorer` (cf_hf).

Self-contained: `explorer_search.py` and `explorer_ui.py` are copies of cf_hf's `cf_hf/explorer/search.py`
and `ui.py`, `fairness.py` of `cf_hf/metrics/fairness.py`. `explorer.json` lists the models (a
checkpoint folder here, or a Hub id), their gallery embeddings (`embeddings/*.npy`, read
memory-mapped: a query embeds only the prompt) and the gallery's labels and thumbnails (or the Hub
dataset that holds its images).

Run locally with `python app.py`.
"""

import csv
import json
from pathlib import Path

import numpy as np
from explorer_search import Explorer, ExplorerModel
from explorer_ui import build_app
from PIL import Image

HERE = Path(__file__).resolve().parent
MANIFEST = "explorer.json"


def text_encoder(source: str, revision=None):
    """prompt -> unit-norm text embedding of the CLIP checkpoint `source` (as the embeddings were made)."""
    import torch
    from transformers import AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(source, revision=revision).eval()
    tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
    max_length = int(model.config.text_config.max_position_embeddings)

    def encode(prompt: str):
        with torch.inference_mode():
            tokens = tokenizer([prompt], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            features = model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
            features = getattr(features, "pooler_output", features)
            return torch.nn.functional.normalize(features.float(), dim=-1)[0].numpy()

    return encode


def load_explorer(folder=HERE):
    """(Explorer, image(index) -> PIL image, manifest) of the Space in `folder`."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    gallery = manifest["gallery"]
    with (folder / gallery["labels"]).open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    attributes = {name: [row[name] for row in rows] for name in gallery["attributes"]}
    models = {}
    for name, entry in manifest["models"].items():
        source = str(folder / entry["path"]) if entry.get("path") else entry["hub_id"]
        models[name] = ExplorerModel(np.load(folder / entry["embeddings"], mmap_mode="r"),
                                     text_encoder(source, entry.get("revision")))
    explorer = Explorer(models, attributes, desired=manifest["desired"], convention=manifest["convention"],
                        gallery_name=gallery["name"])
    if gallery.get("hub_dataset"):  # the images stay in a Hub dataset, in the gallery's row order
        from datasets import load_dataset

        dataset = load_dataset(gallery["hub_dataset"], split=gallery["split"])
        if len(dataset) != len(rows):
            raise ValueError(f"dataset {gallery['hub_dataset']!r} has {len(dataset)} rows, the gallery {len(rows)}")
        column = gallery["image_column"]

        def image(index: int):
            return dataset[int(index)][column].convert("RGB")
    else:
        files = [folder / gallery["images"] / row["file"] for row in rows]

        def image(index: int):
            with Image.open(files[index]) as opened:
                return opened.convert("RGB")

    return explorer, image, manifest


if __name__ == "__main__":
    explorer, image, manifest = load_explorer()
    build_app(explorer, image, manifest["title"], manifest["prompt"], manifest["k"]).launch()
