"""WiSE-FT interpolation between an original and a fine-tuned CLIP (CF_α), and the sweep-folder format.

- `wise_ft`: `interpolate` (in memory) and `interpolate_sweep` (one checkpoint folder per α, streamed).
- `sweep`: the folder format and α naming (`alpha_name`, `alpha_key`, `read_sweep`, `load_sweep`).
"""

from cf_hf.interpolation.sweep import (
    ALPHA_FOLDER_PREFIX,
    ALPHA_KEY_PREFIX,
    INTERPOLATION_FILE,
    SWEEP_FILE,
    alpha_key,
    alpha_name,
    load_sweep,
    member_weights,
    read_sweep,
)
from cf_hf.interpolation.wise_ft import DEFAULT_ALPHAS, check_alphas, interpolate, interpolate_sweep

__all__ = [
    "ALPHA_FOLDER_PREFIX", "ALPHA_KEY_PREFIX", "DEFAULT_ALPHAS", "INTERPOLATION_FILE", "SWEEP_FILE", "alpha_key",
    "alpha_name", "check_alphas", "interpolate", "interpolate_sweep", "load_sweep", "member_weights", "read_sweep",
]
