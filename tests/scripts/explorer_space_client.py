"""What a Space host does with the explorer Space, in a fresh process where cf_hf cannot be imported.

Usage: python tests/scripts/explorer_space_client.py SPEC.json OUT.json. Downloads the Space named in SPEC from
the server (HF_ENDPOINT), loads it with its own app.py, answers SPEC's prompts and builds the page.
"""

import json
import sys

sys.modules["cf_hf"] = None  # any `import cf_hf` in the Space's code now fails


def main(spec_path: str, out_path: str) -> None:
    spec = json.loads(open(spec_path).read())
    from huggingface_hub import HfApi, snapshot_download

    folder = snapshot_download(spec["space"], repo_type="space")
    sys.path.insert(0, folder)
    import app

    explorer, image, manifest = app.load_explorer(folder)
    out = {"files": sorted(HfApi().list_repo_files(spec["space"], repo_type="space")),
           "sdk": HfApi().space_info(spec["space"]).card_data.get("sdk"), "answers": []}
    for prompt, k, attribute in spec["queries"]:
        for answer in explorer.search(prompt, k, attribute):
            out["answers"].append({"model": answer.model, "indices": [int(i) for i in answer.indices],
                                   "max_skew": answer.max_skew, "ndkl": answer.ndkl})
    out["thumbnail_size"] = list(image(0).size)
    out["manifest_models"] = {name: {key: entry.get(key) for key in ("hub_id", "revision") if key in entry}
                              for name, entry in manifest["models"].items()}
    from explorer_ui import build_app

    build_app(explorer, image, manifest["title"], manifest["prompt"], manifest["k"])
    out["cf_hf_imported"] = any(name == "cf_hf" or name.startswith("cf_hf.") for name, module in sys.modules.items()
                                if module is not None)
    with open(out_path, "w") as handle:
        json.dump(out, handle)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
