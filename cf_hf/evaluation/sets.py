"""The in-memory evaluation sets every loader returns, and the shipped protocol defaults.

Three plain dataclasses, constructed by the loaders (`cf_hf.evaluation.galleries`) or directly — the
professions world builds its galleries this way:

* `AttributeGallery`: images with sensitive-attribute labels (FairFace, UTKFace, PATA), ranked by
  concept prompts for MaxSkew/MinSkew/NDKL.
* `RetrievalSet`: images with their captions (Flickr30k/COCO), for Recall@K.
* `ZeroShotSet`: images with class labels, class names and prompt templates (ImageNet), for
  zero-shot accuracy.

`images` is any sequence of image paths (str/Path), PIL images, or a lazy sequence such as
`DatasetImages` (a `datasets` image column); images are opened only when embedded.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEFAULTS_FILE = Path(__file__).resolve().parent / "defaults.yaml"
# Placeholders a prompt template may use for the concept or class name.
CONCEPT_PLACEHOLDERS = ("{}", "{concept}")


@functools.lru_cache(maxsize=1)
def protocol_defaults() -> dict:
    """The shipped defaults (`defaults.yaml`): templates, cut-offs, desired distributions, age bins."""
    import yaml

    return yaml.safe_load(DEFAULTS_FILE.read_text(encoding="utf-8"))


def check_templates(templates: Sequence[str], source: str = "templates") -> list[str]:
    """Templates as a list; each must hold a concept placeholder (`{}` or `{concept}`)."""
    if isinstance(templates, str) or not templates:
        raise ValueError(f"{source}: expected a non-empty list of prompt templates, got {templates!r}")
    for index, template in enumerate(templates):
        if not isinstance(template, str) or not any(p in template for p in CONCEPT_PLACEHOLDERS):
            raise ValueError(
                f"{source}: template {index} ({template!r}) has no concept placeholder: write "
                "'{concept}' (or '{}') where the concept or class name goes"
            )
    return list(templates)


def fill_template(template: str, concept: str, article: str | None = None) -> str:
    """Put `concept` (and its indefinite article) into `template`."""
    if article is None:
        article = "an" if concept[:1].lower() in "aeiou" else "a"
    return template.replace("{}", concept).replace("{concept}", concept).replace("{article}", article)


@dataclass(frozen=True)
class Query:
    """One fairness query: a prompt and the concept it names.

    `attributes`: the sensitive attributes this query is evaluated on (None: all of them); PATA
    captions, for instance, are written for one attribute each. `template` and `polarity` (PATA's
    "pos"/"neg") are recorded for the report.
    """

    text: str
    concept: str
    template: str | None = None
    attributes: tuple[str, ...] | None = None
    polarity: str | None = None


def _fingerprint_item(digest, item) -> None:
    if isinstance(item, (str, Path)):
        path = Path(item)
        try:
            stat = path.stat()
        except OSError as error:
            raise FileNotFoundError(f"image {str(path)!r} cannot be read: {error.strerror}") from None
        digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        return
    tobytes = getattr(item, "tobytes", None)
    if tobytes is None:
        raise TypeError(
            f"cannot fingerprint an image of type {type(item).__name__}: give paths, PIL images, "
            "numpy arrays, or a sequence with a `fingerprint` attribute"
        )
    digest.update(f"{type(item).__name__}|{getattr(item, 'mode', '')}|{getattr(item, 'size', '')}|"
                  f"{getattr(item, 'shape', '')}\n".encode())
    digest.update(tobytes())


def fingerprint_images(images: Sequence) -> str:
    """A content key for a sequence of images, used to cache their embeddings.

    Paths are keyed by resolved path, size and modification time (not content: a 1M-image gallery
    must not be read twice); in-memory images by their pixels; lazy sequences by their own
    `fingerprint` attribute (e.g. a `datasets` fingerprint).
    """
    own = getattr(images, "fingerprint", None)
    if isinstance(own, str):
        return own
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"n={len(images)}\n".encode())
    for item in images:
        _fingerprint_item(digest, item)
    return digest.hexdigest()


def _check_images(images, owner: str) -> None:
    if isinstance(images, (str, bytes)) or not hasattr(images, "__len__") or not hasattr(images, "__getitem__"):
        raise TypeError(f"{owner}: images must be a sequence (paths, PIL images, ...), got {type(images).__name__}")
    if len(images) == 0:
        raise ValueError(f"{owner}: no images")


def _check_labels(name: str, labels, n_images: int, owner: str) -> list:
    labels = list(labels)
    if len(labels) != n_images:
        raise ValueError(f"{owner}: attribute {name!r} has {len(labels)} labels for {n_images} images")
    for index, label in enumerate(labels):
        if label is None or label != label or (isinstance(label, str) and not label.strip()):  # NaN != NaN
            raise ValueError(f"{owner}: attribute {name!r} has no value for image {index}")
    return labels


class _ImageSet:
    """Length and a lazily computed content fingerprint, shared by the evaluation sets."""

    images: Sequence
    _fingerprint: str | None

    def __len__(self) -> int:
        return len(self.images)

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = fingerprint_images(self.images)
        return self._fingerprint


@dataclass
class AttributeGallery(_ImageSet):
    """Images with sensitive-attribute labels, ranked by concept prompts.

    Args:
        images: (n_images,) paths, PIL images or a lazy image sequence.
        attributes: attribute name -> (n_images,) labels (e.g. {"gender": [...], "race": [...]}).
        concepts: optional (n_images,) concept of each image (a PATA scene, a world profession);
            enables worst-group recall for queries of those concepts.
        queries: optional prompts that belong to the dataset (PATA's captions); when None the
            protocol's templates x concepts are used.
        name, source: for the report.
    """

    images: Sequence
    attributes: dict[str, list]
    concepts: list[str] | None = None
    queries: list[Query] | None = None
    name: str = "gallery"
    source: str = ""
    _fingerprint: str | None = field(default=None, repr=False)

    def __post_init__(self):
        owner = f"gallery {self.name!r}"
        _check_images(self.images, owner)
        if not isinstance(self.attributes, Mapping) or not self.attributes:
            raise ValueError(f"{owner}: attributes must map at least one attribute name to labels")
        self.attributes = {
            str(name): _check_labels(name, labels, len(self.images), owner) for name, labels in self.attributes.items()
        }
        for name, labels in self.attributes.items():
            if len(set(labels)) < 2:
                raise ValueError(
                    f"{owner}: attribute {name!r} has a single value ({labels[0]!r}) in the gallery; "
                    "fairness needs at least two groups to compare"
                )
        if self.concepts is not None:
            self.concepts = [str(concept) for concept in _check_labels("concept", self.concepts, len(self.images), owner)]
        if self.queries is not None and not self.queries:
            raise ValueError(f"{owner}: queries is empty (give None to use the protocol's prompts)")


@dataclass
class RetrievalSet(_ImageSet):
    """Images and their captions (Flickr30k/COCO style, typically five per image).

    Args:
        images: (n_images,) paths, PIL images or a lazy image sequence.
        captions: (n_images,) lists of captions; every image needs at least one.
    """

    images: Sequence
    captions: list[list[str]]
    name: str = "retrieval"
    source: str = ""
    _fingerprint: str | None = field(default=None, repr=False)

    def __post_init__(self):
        owner = f"retrieval set {self.name!r}"
        _check_images(self.images, owner)
        if len(self.captions) != len(self.images):
            raise ValueError(f"{owner}: {len(self.captions)} caption lists for {len(self.images)} images")
        self.captions = [[captions] if isinstance(captions, str) else list(captions) for captions in self.captions]
        for index, captions in enumerate(self.captions):
            if not captions or not all(isinstance(text, str) and text.strip() for text in captions):
                raise ValueError(f"{owner}: image {index} needs at least one non-empty caption, got {captions!r}")


@dataclass
class ZeroShotSet(_ImageSet):
    """Images with class labels, for zero-shot classification with a prompt-template ensemble.

    Args:
        images: (n_images,) paths, PIL images or a lazy image sequence.
        labels: (n_images,) class indices into `class_names`.
        class_names: (n_classes,) names put into the templates.
        templates: prompt templates with a `{}`/`{concept}` placeholder (default: shipped ensemble).
        attributes: optional attribute name -> (n_images,) labels, for worst-group and balanced
            accuracy (e.g. stereotypical vs anti-stereotypical people).
    """

    images: Sequence
    labels: list[int]
    class_names: list[str]
    templates: list[str] | None = None
    attributes: dict[str, list] | None = None
    name: str = "zero_shot"
    source: str = ""
    _fingerprint: str | None = field(default=None, repr=False)

    def __post_init__(self):
        owner = f"zero-shot set {self.name!r}"
        _check_images(self.images, owner)
        self.class_names = [str(name) for name in self.class_names]
        if len(self.class_names) < 2:
            raise ValueError(f"{owner}: needs at least two class names, got {self.class_names!r}")
        duplicates = sorted({name for name in self.class_names if self.class_names.count(name) > 1})
        if duplicates:
            raise ValueError(f"{owner}: class names listed twice: {duplicates}")
        self.labels = [int(label) for label in self.labels]
        if len(self.labels) != len(self.images):
            raise ValueError(f"{owner}: {len(self.labels)} labels for {len(self.images)} images")
        for index, label in enumerate(self.labels):
            if not 0 <= label < len(self.class_names):
                raise ValueError(f"{owner}: image {index} has label {label}, outside [0, {len(self.class_names)})")
        templates = self.templates if self.templates is not None else protocol_defaults()["zero_shot_templates"]
        self.templates = check_templates(templates, f"{owner} templates")
        if self.attributes is not None:
            self.attributes = {
                str(name): _check_labels(name, labels, len(self.images), owner)
                for name, labels in self.attributes.items()
            }


class DatasetImages(Sequence):
    """The image column of a `datasets.Dataset`, decoded lazily (one batch at a time)."""

    def __init__(self, dataset, column: str):
        self.dataset = dataset.select_columns([column])
        self.column = column
        self.fingerprint = f"datasets:{getattr(dataset, '_fingerprint', id(dataset))}:{column}"

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.get_batch(*index.indices(len(self))[:2])
        return self.dataset[int(index)][self.column]

    def get_batch(self, start: int, stop: int) -> list:
        """Images start..stop-1, decoded in one read."""
        return list(self.dataset[start:stop][self.column])
