"""Counterfactual synthesis: captions → base images → human masks → inpainted counterfactuals.

Each stage is a separate, swappable component with one call (see `interfaces`); the orchestration
glues them together, writes resumable shards and builds the dataset.

```python
from cf_hf.generation import GenerationConfig, generate
report = generate(config, caption_writer=..., text_to_image=..., segmenter=..., inpainter=...,
                  output_dir="outputs/run")
```
The default components (`LLMCaptionWriter`, `DiffusersTextToImage`, `SegformerSegmenter`,
`DiffusersInpainter`) live in one module per stage and load their models on first use.
"""

import importlib

# Resolved on first access: `cf_hf.concepts` imports `cf_hf.generation.interfaces`, and the
# orchestration imports `cf_hf.concepts`, so eager imports here would be circular.
_EXPORTS = {
    "Concept": "cf_hf.generation.interfaces",
    "ImageRequest": "cf_hf.generation.interfaces",
    "InpaintRequest": "cf_hf.generation.interfaces",
    "GenerationConfig": "cf_hf.generation.orchestration.config",
    "GenerationReport": "cf_hf.generation.orchestration.pipeline",
    "generate": "cf_hf.generation.orchestration.pipeline",
    "plan_bases": "cf_hf.generation.orchestration.planning",
    "ProcessFailedError": "cf_hf.generation.orchestration.distributed",
    "RunFolderError": "cf_hf.generation.run_folder",
    "VerificationConfig": "cf_hf.generation.verification.scores",
    "Verifier": "cf_hf.generation.verification.scoring",
    "verify_dataset": "cf_hf.generation.verification.scoring",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
