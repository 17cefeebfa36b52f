"""Tiny evaluation sets in every on-disk format, written to a temporary folder, for the evaluation
tests. Images are 8x8 PNGs whose color encodes a sensitive attribute (red-ish for one value,
green-ish for the other) so that a color-reading "model" is biased by construction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

IMAGE_SIZE = 8
# RGB of each gender value: a model that reads color encodes gender.
GENDER_COLORS = {"Male": (200, 40, 40), "Female": (40, 200, 40)}
RACES = ["White", "Black", "East Asian", "Indian"]
AGES = ["20-29", "30-39", "60-69"]


def write_image(path: Path, color, seed: int) -> Path:
    """An 8x8 PNG of `color` with a seeded random pattern in the blue channel."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    pixels[..., 0], pixels[..., 1] = color[0], color[1]
    pixels[..., 2] = rng.integers(0, 256, size=(IMAGE_SIZE, IMAGE_SIZE))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def people(n: int):
    """n (gender, race, age) triples cycling through every combination."""
    genders = list(GENDER_COLORS)
    return [(genders[i % 2], RACES[(i // 2) % len(RACES)], AGES[(i // 8) % len(AGES)]) for i in range(n)]


def make_fairface(root: Path, n: int = 24, variant: str | None = None) -> Path:
    """root/[variant/]val/<i>.jpg + root/fairface_label_val.csv."""
    base = root / variant if variant else root
    lines = ["file,age,gender,race,service_test"]
    for index, (gender, race, age) in enumerate(people(n)):
        write_image(base / "val" / f"{index + 1}.jpg", GENDER_COLORS[gender], index)
        lines.append(f"val/{index + 1}.jpg,{age},{gender},{race},True")
    (root / "fairface_label_val.csv").write_text("\n".join(lines) + "\n")
    return root


def make_utkface(root: Path, n: int = 20) -> Path:
    """root/<age>_<gender>_<race>_<date>.jpg.chip.jpg files."""
    for index in range(n):
        gender = index % 2
        color = GENDER_COLORS["Male" if gender == 0 else "Female"]
        write_image(root / f"{20 + index * 2}_{gender}_{index % 5}_2017010{index % 10}.jpg.chip.jpg", color, index)
    return root


def make_pata(root: Path, n: int = 24) -> tuple[Path, Path]:
    """A PATA list (scenes with underscores, one URL path) + captions JSON."""
    scenes = ["gun_range", "office"]
    lines = []
    for index, (gender, race, _) in enumerate(people(n)):
        scene = scenes[index % 2]
        age = "young" if index % 3 else "old"
        path = write_image(root / "images" / f"{index}.jpg", GENDER_COLORS[gender], index)
        token = f"https://example.com/pata/{path.name}" if index == 0 else f"images/{path.name}"
        lines.append(f"{scene}_{race.replace(' ', '-')}_{gender.lower()}_{age}|{token}")
    files_list = root / "pata_fairness.files.lst"
    files_list.write_text("\n".join(lines) + "\n")
    # The URL line resolves by file name in the image root: put that image at the root too.
    write_image(root / "0.jpg", GENDER_COLORS[people(1)[0][0]], 0)
    captions = [
        {"short": "gun range", "long": "a photo of a {} at a gun range",
         "pos": {"races": ["a photo of a person at a gun range"], "gender": ["a photo of a person at a gun range"],
                 "age": []},
         "neg": {"races": ["a photo of a criminal"], "gender": [], "age": ["a photo of a criminal"]}},
        {"short": "office", "long": "a photo of a {} in an office",
         "pos": {"races": ["a photo of a person in an office"], "gender": ["a photo of a manager"], "age": []},
         "neg": {"races": [], "gender": ["a photo of a thief"], "age": []}},
    ]
    captions_path = root / "pata_fairness.captions.json"
    captions_path.write_text(json.dumps(captions))
    return files_list, captions_path


def make_karpathy(root: Path, n: int = 6) -> Path:
    """dataset_flickr30k.json with n test images (+ one train image) and five captions each."""
    images = []
    for index in range(n + 1):
        gender = "Male" if index % 2 == 0 else "Female"
        write_image(root / "images" / f"{index}.jpg", GENDER_COLORS[gender], 100 + index)
        images.append({
            "filename": f"{index}.jpg", "filepath": "images", "split": "train" if index == n else "test",
            "sentences": [{"raw": f"a photo of a {word} number {index}", "tokens": []}
                          for word in ("doctor", "nurse", "chef", "firefighter", "person")],
        })
    path = root / "dataset_flickr30k.json"
    path.write_text(json.dumps({"dataset": "flickr30k", "images": images}))
    return path


def make_imagenet(root: Path, classes=("doctor", "nurse", "chef"), per_class: int = 3) -> Path:
    """root/<class>/<i>.png."""
    for label, name in enumerate(classes):
        for index in range(per_class):
            write_image(root / name / f"{index}.png", (60 * label, 80, 30), 200 + 10 * label + index)
    return root
