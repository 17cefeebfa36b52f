"""`write_space`: the explorer as a self-contained Hugging Face Space folder (gradio SDK).

    space/
      README.md            Space card: YAML (sdk: gradio, app_file: app.py, tags) + what it shows
      app.py               loads explorer.json and serves the page (`cf_hf/explorer/space_template/app.py`)
      explorer_search.py   copy of cf_hf/explorer/search.py   } the import lines of the copies
      explorer_ui.py       copy of cf_hf/explorer/ui.py       } name the Space's own files
      fairness.py          copy of cf_hf/metrics/fairness.py
      requirements.txt
      explorer.json        models, embeddings, gallery, protocol, defaults
      embeddings/<i>.npy   each model's (n_images, dim) unit-norm gallery embeddings
      models/<i>/          a local checkpoint (save_pretrained, safetensors); a Hub id is a pointer
      gallery/images/*.png thumbnails; gallery/labels.csv: file + one column per attribute
                           (with `gallery_repo`: no thumbnails, the images come from that Hub dataset)

Nothing in it imports cf_hf: the Space runs with the packages of requirements.txt and gradio.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np

PACKAGE_DIR = Path(__file__).resolve().parent
MANIFEST = "explorer.json"
# Copied files: Space file name -> (source, the import line rewritten so that the copy stands alone).
COPIED_FILES = {
    "explorer_search.py": (PACKAGE_DIR / "search.py", ("from cf_hf.metrics.fairness import", "from fairness import")),
    "explorer_ui.py": (PACKAGE_DIR / "ui.py", ("from cf_hf.explorer.search import", "from explorer_search import")),
    "fairness.py": (PACKAGE_DIR.parent / "metrics" / "fairness.py", None),
}
TEMPLATE_FILES = ("app.py", "requirements.txt")
DEFAULT_THUMBNAIL_PIXELS = 128
SPACE_CARD = """---
title: {title}
emoji: 🔎
colorFrom: blue
colorTo: gray
sdk: gradio
app_file: app.py
pinned: false
tags:
- cf_hf
- fairness
- clip
---

# {title}

For any prompt, the top-{k} images that each model retrieves from the gallery **{gallery}** ({n_images}
images), the share of each value of {attributes} among them against the gallery's share, and the
prompt's MaxSkew@k and NDKL@k ({desired}, {convention} convention; definitions in `fairness.py`).

Models: {models}.

Written by `cf-hf push explorer` (cf_hf). The gallery embeddings are stored in `embeddings/`: a
query embeds only the prompt.
"""


class SpaceError(ValueError):
    """A Space that cannot be written as asked; the message says why."""


def _copy_source(source: Path, rewrite: tuple[str, str] | None, relative: str) -> str:
    text = source.read_text(encoding="utf-8")
    if rewrite is not None:
        old, new = rewrite
        if text.count(old) != 1:
            raise SpaceError(f"{source}: expected one line starting {old!r} to rewrite, found {text.count(old)}")
        text = text.replace(old, new)
    return f"# Copied from cf_hf ({relative}) by `cf-hf push explorer`; edit the original, not this copy.\n{text}"


def _thumbnail(image, pixels: int):
    image = image.convert("RGB")
    if max(image.size) > pixels:
        image = image.copy()
        image.thumbnail((pixels, pixels))
    return image


def _is_local_checkpoint(path: str | Path) -> bool:
    return Path(str(path)).is_dir()


def write_space(models: Mapping[str, str | Path], gallery, output_dir: str | Path, embedding_config=None,
                title: str = "cf_hf retrieval explorer", desired: str = "equal_opportunity", convention: str = "berg",
                prompt: str | None = None, k: int | None = None, thumbnail_pixels: int = DEFAULT_THUMBNAIL_PIXELS,
                revision: str | None = None, progress: bool = True, gallery_repo: str | None = None,
                gallery_split: str = "train", image_column: str = "image") -> Path:
    """Write the Space of `models` (name -> checkpoint folder or Hub id) over `gallery` (an
    `AttributeGallery`) to `output_dir`, which must be empty or absent. Local checkpoints are
    copied (`save_pretrained`); Hub ids are recorded as pointers (with `revision`).

    `gallery_repo`: a Hub dataset holding the gallery's images in the same row order (split
    `gallery_split`, column `image_column`); the Space then loads them from there instead of
    carrying thumbnails."""
    import torch
    from tqdm.auto import tqdm

    from .build import build_explorer, gallery_image
    from .ui import DEFAULT_K, DEFAULT_PROMPT

    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()):
        raise SpaceError(f"{output_dir} is not empty: give a new folder for the Space")
    if thumbnail_pixels < 8:
        raise SpaceError(f"thumbnail_pixels must be >= 8, got {thumbnail_pixels}")
    explorer, engines = build_explorer(models, gallery, embedding_config, desired, convention, revision)
    output_dir.mkdir(parents=True, exist_ok=True)

    entries = {}
    for index, (name, engine) in enumerate(engines.items()):
        embeddings_file = f"embeddings/{index}.npy"
        (output_dir / "embeddings").mkdir(exist_ok=True)
        np.save(output_dir / embeddings_file, np.asarray(explorer.models[name].image_embeddings))
        entry = {"embeddings": embeddings_file, "source": str(models[name])}
        if _is_local_checkpoint(models[name]):
            entry["path"] = f"models/{index}"
            engine.model.to("cpu", torch.float32).save_pretrained(output_dir / entry["path"])
            engine.processor.save_pretrained(output_dir / entry["path"])
        else:
            entry.update(hub_id=str(models[name]), revision=revision)
        entries[name] = entry

    images_dir = output_dir / "gallery" / "images"
    images_dir.mkdir(parents=True)
    attributes = list(gallery.attributes)
    width = len(str(len(gallery)))
    with (output_dir / "gallery" / "labels.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", *attributes])
        for index in tqdm(range(len(gallery)), desc="gallery thumbnails", unit="img",
                          disable=not progress or gallery_repo is not None):
            file = "" if gallery_repo else f"{index:0{width}d}.png"
            if not gallery_repo:
                _thumbnail(gallery_image(gallery, index), thumbnail_pixels).save(images_dir / file)
            writer.writerow([file, *(gallery.attributes[name][index] for name in attributes)])
    if gallery_repo:
        images_dir.rmdir()

    for file, (source, rewrite) in COPIED_FILES.items():
        relative = source.relative_to(PACKAGE_DIR.parent.parent).as_posix()
        (output_dir / file).write_text(_copy_source(source, rewrite, relative), encoding="utf-8")
    for file in TEMPLATE_FILES:
        shutil.copyfile(PACKAGE_DIR / "space_template" / file, output_dir / file)
    if gallery_repo:
        with (output_dir / "requirements.txt").open("a", encoding="utf-8") as handle:
            handle.write("datasets\n")
    k = min(int(k or DEFAULT_K), len(gallery))
    manifest = {
        "format": "cf_hf-explorer-space", "version": 1, "title": title, "prompt": prompt or DEFAULT_PROMPT, "k": k,
        "desired": desired, "convention": convention, "models": entries,
        "gallery": {"name": gallery.name, "source": gallery.source, "n_images": len(gallery),
                    "attributes": attributes, "labels": "gallery/labels.csv", "images": "gallery/images"},
    }
    if gallery_repo:
        manifest["gallery"].update(images=None, hub_dataset=gallery_repo, split=gallery_split, image_column=image_column)
    (output_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    (output_dir / "README.md").write_text(SPACE_CARD.format(
        title=title, k=k, gallery=gallery.name, n_images=len(gallery), attributes=", ".join(attributes),
        desired=desired.replace("_", " "), convention=convention, models=", ".join(f"`{name}`" for name in models),
    ), encoding="utf-8")  # fmt: skip
    return output_dir
