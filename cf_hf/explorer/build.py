"""An `Explorer` from checkpoints and a gallery the evaluation harness loads.

Each model's gallery embeddings come from the harness's `EmbeddingEngine`: computed once, stored in
its memory-mapped cache (`EmbeddingConfig.cache_dir`) and read from there by every later start and
every query; the prompt is the only thing embedded per query.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .search import Explorer, ExplorerModel


def load_world_gallery(split: str = "test", per_cell: int | None = None, image_size: int | None = None):
    """The professions world's FairFace (`cf_hf.world.galleries.fairface`) as an `AttributeGallery`,
    drawn exactly as `cf-hf demo` draws it for `split` ("test": the reported one, or "validation").
    `per_cell`/`image_size` unset: the demo's defaults."""
    from cf_hf.world import galleries
    from cf_hf.world.demo.config import GALLERY_SEEDS, DemoConfig

    if split not in GALLERY_SEEDS:
        raise ValueError(f"world gallery split {split!r} is not known: use one of {sorted(GALLERY_SEEDS)}")
    defaults = DemoConfig()
    per_cell = defaults.fairface_per_cell if per_cell is None else int(per_cell)
    if per_cell < 1:
        raise ValueError(f"world gallery: per_cell must be >= 1, got {per_cell}")
    size = defaults.corpus.image_size if image_size is None else int(image_size)
    scenes = galleries.fairface(per_cell, seed=GALLERY_SEEDS[split][0], image_size=size)
    suffix = "" if split == "test" else f"_{split}"
    return galleries.attribute_gallery(scenes, name=f"world_fairface{suffix}")


def gallery_image(gallery, index: int):
    """Image `index` of an `AttributeGallery` as a PIL image (paths, arrays and `datasets` rows alike)."""
    from cf_hf.evaluation.embedding import open_image

    return open_image(gallery.images[int(index)])


def _text_encoder(engine):
    def encode(prompt: str):
        return engine.embed_texts([prompt])[0]

    return encode


def build_explorer(models: Mapping[str, str | Path], gallery, embedding_config=None, desired: str = "equal_opportunity",
                   convention: str = "berg", revision: str | None = None) -> tuple[Explorer, dict]:
    """The explorer of `models` (name -> checkpoint folder or Hub id) over `gallery` (an
    `AttributeGallery`), and the name -> `EmbeddingEngine` it embeds prompts with.

    The gallery is embedded by each model once (with a progress bar); with
    `embedding_config.cache_dir` set, a later call reads the memory-mapped cache instead.
    """
    from cf_hf.evaluation.embedding import EmbeddingEngine

    engines, explorer_models = {}, {}
    for name, path in models.items():
        engine = EmbeddingEngine.from_pretrained(path, embedding_config, name=name, revision=revision)
        embeddings = engine.embed_images(gallery.images, gallery.fingerprint)
        engine.text_fingerprint  # noqa: B018 - hashed now, so that the first query is as fast as the others
        engines[name] = engine
        explorer_models[name] = ExplorerModel(image_embeddings=embeddings, encode_text=_text_encoder(engine))
    explorer = Explorer(explorer_models, gallery.attributes, desired=desired, convention=convention,
                        gallery_name=gallery.name)
    return explorer, engines
