"""The `cf-hf explore` command that opens the demo's outputs in the retrieval explorer: the
original CLIP against the chosen CF_α of the first seed and each compared method's chosen setting (its
fairest when none kept the downstream numbers), on the demo's test FairFace of the world."""

from __future__ import annotations

import shlex
from pathlib import Path

from cf_hf.interpolation import alpha_name

from .config import DemoConfig

# Where the explorer keeps the gallery embeddings of the demo's models (inside the run's folder).
EXPLORER_CACHE = "explorer_cache"


def explorer_command(config: DemoConfig, output_dir: str | Path, chosen_alpha: float,
                     method_selection: dict | None = None) -> str:
    """The shell command (quoted) that serves the explorer of the original vs CF_α (α = `chosen_alpha`)
    and, per method of `method_selection` (results.json's), its first seed's checkpoint that the
    comparison table shows, named after the method."""
    from .report import chosen_or_fairest

    output_dir = Path(output_dir)
    chosen = alpha_name(chosen_alpha)
    methods = [f"{method}={output_dir / 'seed-0' / 'methods' / chosen_or_fairest(selection)}"
               for method, selection in (method_selection or {}).items()]
    arguments = [
        "cf-hf", "explore",
        "--model", f"original={output_dir / 'original'}", f"CF_{chosen}={output_dir / 'seed-0' / 'sweep' / chosen}",
        *methods,
        "--world_gallery", "test", "--world_per_cell", str(config.fairface_per_cell),
        "--cache_dir", str(output_dir / EXPLORER_CACHE),
    ]  # fmt: skip
    return shlex.join(arguments)
