"""What another project does with the published artefacts, run in a fresh process without cf_hf.

Usage: python tests/scripts/hub_contract_client.py SPEC.json OUT.json. SPEC names the repos (and the local
checkpoint to compare with; a SPEC with only "dataset" checks the dataset alone); OUT receives what was observed. Only the public clients are used,
pointed at the server by HF_ENDPOINT.
"""

import json
import sys

import numpy as np
import torch
from PIL import Image


def main(spec_path: str, out_path: str) -> None:
    spec = json.loads(open(spec_path).read())
    out = {}

    from datasets import load_dataset

    dataset = load_dataset(spec["dataset"], split="train")
    out["dataset_rows"] = len(dataset)
    out["dataset_features"] = {name: type(feature).__name__ for name, feature in dataset.features.items()}
    out["dataset_concepts"] = dataset.features["concept"].names
    out["dataset_first_image_size"] = list(dataset[0]["image"].size)
    out["dataset_group_ids"] = list(dataset["group_id"])
    streamed = load_dataset(spec["dataset"], split="train", streaming=True)
    rows = list(streamed)
    out["streamed_rows"] = len(rows)
    out["streamed_group_ids"] = [row["group_id"] for row in rows]
    out["streamed_features"] = sorted((streamed.features or {}).keys())

    out["dataset_feature_types"] = {name: repr(feature) for name, feature in dataset.features.items()}
    out["dataset_captions"] = list(dataset["caption"])
    if "model" not in spec:  # a dataset-only check
        out["cf_hf_imported"] = any(name == "cf_hf" or name.startswith("cf_hf.") for name in sys.modules)
        open(out_path, "w").write(json.dumps(out))
        return

    from transformers import CLIPModel, CLIPProcessor

    image = Image.fromarray((np.arange(32 * 32 * 3) % 251).astype("uint8").reshape(32, 32, 3))
    texts = ["a photo of a doctor", "a photo of a nurse"]

    def embeddings(source, **kwargs):
        model = CLIPModel.from_pretrained(source, **kwargs).eval()
        processor = CLIPProcessor.from_pretrained(source, **kwargs)
        inputs = processor(text=texts, images=image, return_tensors="pt", padding=True)
        with torch.no_grad():
            output = model(**inputs)
        return output.text_embeds, output.image_embeds

    out["model_max_abs_diff"] = {}
    for label, (revision, local) in spec["models"].items():
        kwargs = {"revision": revision} if revision else {}
        hub_text, hub_image = embeddings(spec["model"], **kwargs)
        local_text, local_image = embeddings(local)
        out["model_max_abs_diff"][label] = max(
            (hub_text - local_text).abs().max().item(), (hub_image - local_image).abs().max().item()
        )

    import evaluate

    metric = evaluate.load(spec["metric"])
    out["metric"] = metric.compute(predictions=[0.9, 0.8, 0.7, 0.6, 0.5, 0.4], references=[0, 0, 0, 1, 1, 1], k=3)
    out["cf_hf_imported"] = any(name == "cf_hf" or name.startswith("cf_hf.") for name in sys.modules)
    open(out_path, "w").write(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
