"""Loaders for the evaluation sets in the formats people have on disk, one module per format.
Nothing is downloaded.

* `fairface`: `load_fairface`, a `fairface_label_val.csv`-style CSV + the image folder.
* `utkface`: `load_utkface`, a folder of `age_gender_race_date.jpg` files.
* `pata`: `load_pata`, `scene_race_gender_age|path` lines + the captions JSON.
* `karpathy`: `load_karpathy`, Flickr30k/COCO Karpathy-split JSON + the image folder.
* `imagenet`: `load_imagenet_folder`, a folder per class + class names + prompt templates.
* `hf`: `load_hf_gallery` / `load_hf_retrieval` / `load_hf_zero_shot`, any `datasets` dataset with an
  image column and label/caption columns named as options.
* `common`: what they share (image files, required paths, line files, label-value files, age bins).

Every loader validates its input and names the file, row or column that is wrong.
"""

from .fairface import load_fairface
from .hf import load_hf_gallery, load_hf_retrieval, load_hf_zero_shot
from .imagenet import load_imagenet_folder
from .karpathy import load_karpathy
from .pata import load_pata
from .utkface import load_utkface

__all__ = [
    "load_fairface",
    "load_hf_gallery",
    "load_hf_retrieval",
    "load_hf_zero_shot",
    "load_imagenet_folder",
    "load_karpathy",
    "load_pata",
    "load_utkface",
]
