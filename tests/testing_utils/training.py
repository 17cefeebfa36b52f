"""Tiny counterfactual datasets for the training tests (imported by them and by the two-process script)."""

from __future__ import annotations

import datasets
import numpy as np
from PIL import Image

CAPTIONS = [
    f"a photo of a {name} {where}"
    for name in ["doctor", "nurse", "chef", "firefighter"]
    for where in ["in a hospital", "in a kitchen", "near a truck", "at work", "outdoors"]
]
FEATURES = datasets.Features(
    {"image": datasets.Image(), "caption": datasets.Value("string"), "group_id": datasets.Value("string")}
)


def make_counterfactual_dataset(
    num_groups: int = 8, members: int | list[int] = 4, image_size: int = 32, seed: int = 0
) -> datasets.Dataset:
    """Groups of images sharing a caption: a random scene per group, members differ by a noisy patch.

    `members` is the size of every group, or one size per group.
    """
    rng = np.random.default_rng(seed)
    sizes = [members] * num_groups if isinstance(members, int) else list(members)
    rows = {"image": [], "caption": [], "group_id": []}
    for group, size in enumerate(sizes):
        scene = rng.integers(0, 256, (image_size, image_size, 3))
        for _ in range(size):
            image = scene.copy()
            image[: image_size // 2, : image_size // 2] = rng.integers(0, 256, 3)  # the "person"
            rows["image"].append(Image.fromarray(image.astype(np.uint8)))
            rows["caption"].append(CAPTIONS[group % len(CAPTIONS)])
            rows["group_id"].append(f"scene-{group}")
    return datasets.Dataset.from_dict(rows, features=FEATURES)
