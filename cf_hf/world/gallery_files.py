"""The world's galleries written in the on-disk formats of the real benchmarks, so that every tool
that reads FairFace, an ImageNet-style folder or a Karpathy-split JSON (`cf-hf evaluate`,
`cf-hf compare`, the loaders of `cf_hf.evaluation`) scores the world exactly as it scores the real
sets. The demo writes them next to its results and prints the `cf-hf compare` command that uses them.

Layout of `folder`:

    fairface/val/00000.png ...          people on the plain backdrop (the fairness gallery)
    fairface/fairface_label_val.csv     file,gender,skin_tone,age
    fairface/train/...                  another draw, the labelled people CLIP-clip is fitted on
    fairface/fairface_label_train.csv
    fairface/labels.yaml                the world's label values (`--fairface_labels`)
    imagenet/<profession>/00000.png     in-context scenes per profession (zero-shot)
    imagenet/classnames.txt, imagenet/templates.txt
    flickr/dataset_flickr30k.json       captions of flickr/00000.png ... (split "test")
    fairness_templates.txt, concepts.yaml, biased_prompts.yaml
    gallery_files.json                  what was written and from which draws
    galleries.yaml                      the manifest: `cf-hf evaluate|compare|explore --galleries FOLDER`
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import galleries
from .corpus import ATTRIBUTE_VALUES, ATTRIBUTES

WORLD_DIR = Path(__file__).resolve().parent
RECORD_FILE = "gallery_files.json"
MANIFEST_FILE = "galleries.yaml"  # read by `--galleries` (cf_hf.cli.command.expand_config)
# The world's attribute words (the closed form's prototypes, BendVLM's prompts and augmentations).
ATTRIBUTE_PROMPTS_FILE = "attribute_prompts.yaml"


@dataclass(frozen=True)
class GalleryFiles:
    """Paths of the written galleries, as the evaluation CLIs name them."""

    folder: Path

    @property
    def fairface(self) -> Path:
        return self.folder / "fairface"

    @property
    def fairface_train_csv(self) -> Path:
        return self.fairface / "fairface_label_train.csv"

    @property
    def fairface_labels(self) -> Path:
        return self.fairface / "labels.yaml"

    @property
    def imagenet(self) -> Path:
        return self.folder / "imagenet"

    @property
    def flickr(self) -> Path:
        return self.folder / "flickr" / "dataset_flickr30k.json"

    def evaluation_options(self, fairness_k: int) -> list[str]:
        """The `cf-hf evaluate` / `cf-hf compare` options that score these galleries with the
        demo's protocol (the world's attributes, professions, templates and k)."""
        return [
            "--fairface", str(self.fairface), "--fairface_labels", str(self.fairface_labels),
            "--fairface_attributes", *ATTRIBUTES,
            "--imagenet", str(self.imagenet), "--imagenet_classes", str(self.imagenet / "classnames.txt"),
            "--imagenet_templates", str(self.imagenet / "templates.txt"),
            "--flickr", str(self.flickr),
            "--templates", str(self.folder / "fairness_templates.txt"),
            "--concepts", str(self.folder / "concepts.yaml"),
            "--k", str(fairness_k),
        ]  # fmt: skip

    def compare_options(self, attributes=ATTRIBUTES) -> list[str]:
        """The `cf-hf compare` method options fitted on these galleries' train draw."""
        return [
            "--attribute", *attributes,
            "--clip_clip_fairface", str(self.fairface), "--clip_clip_fairface_csv", str(self.fairface_train_csv),
            "--biased_prompts_file", str(self.folder / "biased_prompts.yaml"),
            "--attribute_prompts_file", str(self.folder / ATTRIBUTE_PROMPTS_FILE),
        ]  # fmt: skip


def _write_people(gallery, fairface: Path, split: str) -> None:
    (fairface / split).mkdir(parents=True, exist_ok=True)
    with (fairface / f"fairface_label_{split}.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", *ATTRIBUTES])
        for index, image in enumerate(gallery.images):
            name = f"{split}/{index:05d}.png"
            image.save(fairface / name)  # PNG: lossless, so the harness sees the same pixels
            writer.writerow([name, *(str(gallery.attributes[attribute][index]) for attribute in ATTRIBUTES)])


def _write_imagenet(zero_shot, folder: Path) -> None:
    # The loader takes the class folders in sorted order; the class names file follows that order.
    names = sorted(zero_shot.class_names)
    counts = dict.fromkeys(names, 0)
    for image, label in zip(zero_shot.images, zero_shot.labels):
        name = zero_shot.class_names[int(label)]
        (folder / name).mkdir(parents=True, exist_ok=True)
        image.save(folder / name / f"{counts[name]:05d}.png")
        counts[name] += 1
    (folder / "classnames.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    (folder / "templates.txt").write_text("\n".join(zero_shot.templates) + "\n", encoding="utf-8")


def _write_flickr(retrieval, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for index, (image, captions) in enumerate(zip(retrieval.images, retrieval.captions)):
        filename = f"{index:05d}.png"
        image.save(folder / filename)
        images.append({"filename": filename, "split": "test", "sentences": [{"raw": caption} for caption in captions]})
    (folder / "dataset_flickr30k.json").write_text(json.dumps({"dataset": retrieval.name, "images": images}),
                                                   encoding="utf-8")


def manifest(fairness_k: int | None = None, random_floor_queries: int | None = None,
             with_fit_people: bool = True) -> dict:
    """The manifest of the written galleries, paths relative to the folder: under `options`, what
    scores them with the demo's protocol (the evaluation sets, the world's attributes, prompts and
    concepts), for every command that has the option; under `compare`, what `cf-hf compare`'s
    methods are fitted on (when the train draw was written: the labelled set of CLIP-clip, SFID, SPD and
    bias alignment, BendVLM's reference set) and the world's prompts files."""
    options = {
        "fairface": "fairface", "fairface_labels": "fairface/labels.yaml", "fairface_attributes": list(ATTRIBUTES),
        "imagenet": "imagenet", "imagenet_classes": "imagenet/classnames.txt",
        "imagenet_templates": "imagenet/templates.txt", "flickr": "flickr/dataset_flickr30k.json",
        "templates": "fairness_templates.txt", "concepts": "concepts.yaml",
    }  # fmt: skip
    if fairness_k is not None:
        options["k"] = [fairness_k]
    if random_floor_queries is not None:
        options["random_floor_queries"] = random_floor_queries
    sections = {"options": options}
    if with_fit_people:
        sections["compare"] = {"attribute": list(ATTRIBUTES), "clip_clip_fairface": "fairface",
                               "clip_clip_fairface_csv": "fairface/fairface_label_train.csv",
                               "biased_prompts_file": "biased_prompts.yaml",
                               "attribute_prompts_file": ATTRIBUTE_PROMPTS_FILE}
    return sections


def write_gallery_files(folder: str | Path, fairface, imagenet, flickr, fit_people=None,
                        draws: dict | None = None, fairness_k: int | None = None,
                        random_floor_queries: int | None = None) -> GalleryFiles:
    """Write the world's evaluation sets (`galleries.attribute_gallery`, `.zero_shot_set`,
    `.retrieval_set` of in-memory images) as FairFace / ImageNet-folder / Karpathy files under
    `folder`, replacing an earlier copy; `fit_people` (optional, an attribute gallery) becomes
    FairFace's train split. `draws` (e.g. the seeds and sizes) is recorded in `gallery_files.json`;
    `galleries.yaml` (`manifest`) lists the options that score them, with `fairness_k` and
    `random_floor_queries` when given."""
    folder = Path(folder)
    if folder.exists():
        if not (folder / RECORD_FILE).is_file():
            raise FileExistsError(f"{folder}: exists and was not written by write_gallery_files; choose another folder")
        shutil.rmtree(folder)
    fairface_dir = folder / "fairface"
    _write_people(fairface, fairface_dir, "val")
    if fit_people is not None:
        _write_people(fit_people, fairface_dir, "train")
    labels = {attribute: list(ATTRIBUTE_VALUES[attribute]) for attribute in ATTRIBUTES}
    (fairface_dir / "labels.yaml").write_text(yaml.safe_dump(labels, sort_keys=False), encoding="utf-8")
    _write_imagenet(imagenet, folder / "imagenet")
    _write_flickr(flickr, folder / "flickr")
    (folder / "fairness_templates.txt").write_text("\n".join(galleries.FAIRNESS_TEMPLATES) + "\n", encoding="utf-8")
    shutil.copyfile(WORLD_DIR / "professions.yaml", folder / "concepts.yaml")
    shutil.copyfile(WORLD_DIR / "biased_prompts.yaml", folder / "biased_prompts.yaml")
    shutil.copyfile(WORLD_DIR / ATTRIBUTE_PROMPTS_FILE, folder / ATTRIBUTE_PROMPTS_FILE)
    record = {"fairface": len(fairface), "fairface_train": len(fit_people) if fit_people is not None else 0,
              "imagenet": len(imagenet), "flickr": len(flickr), "draws": draws or {}}  # fmt: skip
    (folder / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    options = manifest(fairness_k, random_floor_queries, with_fit_people=fit_people is not None)
    (folder / MANIFEST_FILE).write_text(yaml.safe_dump(options, sort_keys=False), encoding="utf-8")
    return GalleryFiles(folder)
