"""The `cf-hf explore` command that opens the demo's outputs in the retrieval explorer: the
original CLIP against the chosen CF_α of the first seed, on the demo's test FairFace of the world."""

from __future__ import annotations

import shlex
from pathlib import Path

from cf_hf.interpolation import alpha_name

from .config import DemoConfig

# Where the explorer keeps the gallery embeddings of the demo's models (inside the run's folder).
EXPLORER_CACHE = "explorer_cache"


def explorer_command(config: DemoConfig, output_dir: str | Path, chosen_alpha: float) -> str:
    """The shell command (quoted) that serves the explorer of the original vs CF_α (α = `chosen_alpha`)."""
    output_dir = Path(output_dir)
    chosen = alpha_name(chosen_alpha)
    arguments = [
        "cf-hf", "explore",
        "--model", f"original={output_dir / 'original'}", f"CF_{chosen}={output_dir / 'seed-0' / 'sweep' / chosen}",
        "--world_gallery", "test", "--world_per_cell", str(config.fairface_per_cell),
        "--cache_dir", str(output_dir / EXPLORER_CACHE),
    ]  # fmt: skip
    return shlex.join(arguments)
