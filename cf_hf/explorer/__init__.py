"""The retrieval explorer: for any prompt, whom each model retrieves from an attribute-labelled
gallery, with the attribute shares of the top-k and the prompt's MaxSkew and NDKL, in a gradio page
(`cf-hf explore`), publishable as a self-contained Space (`cf-hf push explorer`).

    from cf_hf.explorer import build_explorer, build_app, load_world_gallery

    gallery = load_world_gallery()
    explorer, _ = build_explorer({"original": "outputs/demo/original", "cf": "./cf-clip"}, gallery)
    answers = explorer.search("a photo of a doctor", k=24, attribute="gender")

Modules: `search` (the query: numpy only), `ui` (the gradio page), `build` (an explorer from
checkpoints and a harness gallery, embeddings from the harness's cache), `space` (the Space folder),
`cli` (`cf-hf explore`). gradio is an optional extra: `pip install cf_hf[explorer]`.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Explorer": "search", "ExplorerModel": "search", "ModelAnswer": "search", "ExplorerError": "search",
    "build_app": "ui", "build_explorer": "build", "load_world_gallery": "build", "gallery_image": "build",
    "write_space": "space", "SpaceError": "space",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cf_hf.explorer' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
