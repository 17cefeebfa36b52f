"""Orchestration: the resumable run that glues the generation components together.

```python
report = generate(config, caption_writer=..., text_to_image=..., segmenter=..., inpainter=...,
                  output_dir="outputs/run")
```
One module per concern:

- `config` — `GenerationConfig` (what to generate), its validation and the run's columns;
- `planning` — the plan fixed up front from the config and the seed: base images, their grid
  cells and seeds, shards, and which process takes which shard;
- `distributed` — several processes (`accelerate launch`): the process state, meeting points and
  `ProcessFailedError`, so that one process's error stops the others;
- `pipeline` — `generate`: captions → base images → masks → counterfactuals → shards, resumable.

The names below load lazily (`cf_hf.concepts` imports `cf_hf.generation.interfaces`, and the
config imports `cf_hf.concepts`).
"""

from __future__ import annotations

import importlib

# public name -> the module that defines it
_IMPORT_STRUCTURE: dict[str, list[str]] = {
    "cf_hf.generation.orchestration.config": ["DECORATOR_PREFIX", "RESERVED_COLUMNS", "GenerationConfig", "run_schema"],
    "cf_hf.generation.orchestration.planning": ["PlannedBase", "plan_bases", "process_shards", "shard_bases"],
    "cf_hf.generation.orchestration.distributed": ["ProcessFailedError", "distributed_state"],
    "cf_hf.generation.orchestration.pipeline": ["STAGES", "GenerationReport", "generate"],
}
_NAME_TO_MODULE = {name: module for module, names in _IMPORT_STRUCTURE.items() for name in names}

__all__ = sorted(_NAME_TO_MODULE)


def __getattr__(name: str):
    if name in _NAME_TO_MODULE:
        return getattr(importlib.import_module(_NAME_TO_MODULE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
