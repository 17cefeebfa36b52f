"""The colors of the professions world, and the pixel classifier that finds a person in them.

The world reserves a few color *rays* for the person's appearance — four skin tones and two hair
colors — and keeps every context color (walls, floors, props, attire) far from them. Lighting
multiplies every pixel by one gain in `[MIN_GAIN, MAX_GAIN]`, so a reserved color `c` appears as
`gain · c + noise`: a segment of the ray through `c`. A pixel is "appearance" when it lies within
`APPEARANCE_DISTANCE` of one of those segments. That is what lets the world's segmenter work from
the pixels alone, as a human-parsing model does on photographs, and it is checked for every
context color by `palette_margins` (and by the tests).
"""

from __future__ import annotations

import numpy as np

# Lighting decorators multiply the whole image by one of these gains.
LIGHTING_GAINS = {"dim light": 0.8, "soft light": 0.9, "bright light": 1.0}
MIN_GAIN = min(LIGHTING_GAINS.values())
MAX_GAIN = max(LIGHTING_GAINS.values())
# Camera decorators add Gaussian pixel noise of this standard deviation (0-255 scale).
CAMERA_NOISE = {"clean photo": 0.0, "grainy photo": 3.0}
# A pixel within this distance (0-255 RGB units) of a reserved segment counts as appearance;
# 4 noise standard deviations, so about one noisy appearance pixel in a thousand is missed.
APPEARANCE_DISTANCE = 12.0
# Slack on the gain range when matching, for noise along the ray.
GAIN_SLACK = 0.04

# The person's appearance: the sensitive attributes are drawn with these colors (and the hair
# length for gender presentation, see `render`). Skin tones stand in for race groups.
SKIN_TONES: dict[str, tuple[int, int, int]] = {
    "light": (238, 206, 186),
    "medium_light": (208, 152, 106),
    "medium_dark": (146, 94, 58),
    "dark": (86, 56, 44),
}
# Age is shown by the hair color.
HAIR_COLORS: dict[str, tuple[int, int, int]] = {
    "young_adult": (38, 30, 28),
    "elderly": (152, 152, 156),
}

# Context colors, by name. None of them may come near a reserved segment (see module docstring).
CONTEXT_COLORS: dict[str, tuple[int, int, int]] = {
    # hospital
    "hospital_wall": (196, 222, 246),
    "hospital_floor": (160, 214, 186),
    "window": (168, 204, 240),
    "window_frame": (112, 132, 176),
    "bed": (232, 238, 252),
    "bed_frame": (118, 136, 186),
    "sign_white": (246, 246, 252),
    "cross_red": (214, 36, 48),
    "iv_pole": (132, 144, 190),
    "iv_bag": (140, 222, 240),
    # kitchen
    "tile": (222, 242, 232),
    "grout": (164, 210, 224),
    "counter": (140, 160, 196),
    "cabinet": (104, 150, 172),
    "stove": (84, 96, 136),
    "pot": (70, 92, 130),
    "steam": (236, 244, 252),
    "cake": (238, 160, 206),
    "cream": (250, 250, 255),
    "cherry": (210, 30, 70),
    # street
    "sky": (156, 198, 244),
    "building": (126, 140, 186),
    "building_window": (200, 222, 248),
    "road": (98, 110, 158),
    "lane_mark": (236, 238, 248),
    "truck_red": (206, 36, 40),
    "ladder": (212, 216, 236),
    "wheel": (70, 76, 118),
    "police_blue": (40, 72, 168),
    "police_roof": (234, 238, 252),
    "siren_red": (240, 40, 50),
    "siren_blue": (40, 90, 250),
    # school
    "school_wall": (200, 232, 190),
    "school_floor": (168, 156, 214),
    "clock": (240, 242, 252),
    "chalkboard": (46, 98, 70),
    "chalk": (226, 244, 232),
    "board_frame": (146, 116, 176),
    "shelf": (122, 112, 176),
    "book_red": (200, 40, 60),
    "book_blue": (56, 104, 206),
    "book_green": (60, 164, 96),
    "book_teal": (40, 170, 180),
    # the plain backdrop of portraits (the fairness gallery)
    "plain": (168, 214, 216),
    "plain_shade": (150, 200, 206),
    # attire: two per setting (a profession pair shares them) and a casual set for portraits
    "coat_white": (226, 236, 252),
    "scrubs_teal": (70, 170, 170),
    "apron_white": (236, 240, 252),
    "apron_red": (196, 56, 76),
    "uniform_navy": (58, 72, 140),
    "uniform_olive": (110, 140, 70),
    "cardigan_purple": (140, 88, 166),
    "shirt_green": (76, 146, 96),
    "casual_blue": (84, 112, 190),
    "casual_maroon": (170, 60, 96),
    "casual_green": (90, 160, 120),
    "casual_violet": (124, 100, 200),
    "trousers_slate": (80, 90, 140),
}


def _reserved_colors() -> tuple[list[str], np.ndarray]:
    names = [f"skin:{name}" for name in SKIN_TONES] + [f"hair:{name}" for name in HAIR_COLORS]
    colors = np.array(list(SKIN_TONES.values()) + list(HAIR_COLORS.values()), dtype=np.float64)
    return names, colors


RESERVED_NAMES, RESERVED_COLORS = _reserved_colors()
# Indices into RESERVED_COLORS.
SKIN_INDICES = tuple(range(len(SKIN_TONES)))
HAIR_INDICES = tuple(range(len(SKIN_TONES), len(RESERVED_NAMES)))


def segment_distances(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance of every pixel to every reserved segment, and the gain that fits it best.

    Args:
        pixels: (..., 3) RGB values on the 0-255 scale (any float or int dtype).

    Returns:
        distances (..., n_reserved) and gains (..., n_reserved).
    """
    values = np.asarray(pixels, dtype=np.float64)
    norms = np.linalg.norm(RESERVED_COLORS, axis=1)
    directions = RESERVED_COLORS / norms[:, None]
    along = values @ directions.T  # (..., n_reserved)
    along = np.clip(along, (MIN_GAIN - GAIN_SLACK) * norms, (MAX_GAIN + GAIN_SLACK) * norms)
    closest = along[..., None] * directions  # (..., n_reserved, 3)
    distances = np.linalg.norm(values[..., None, :] - closest, axis=-1)
    return distances, along / norms


def classify_pixels(pixels: np.ndarray) -> np.ndarray:
    """Reserved color index of each pixel, or -1 for context: (H, W, 3) -> (H, W) int."""
    distances, _ = segment_distances(pixels)
    best = distances.argmin(axis=-1)
    return np.where(distances.min(axis=-1) <= APPEARANCE_DISTANCE, best, -1)


def palette_margins() -> dict[str, float]:
    """For each context color, its smallest distance to a reserved segment over all lighting gains.

    The segmenter is exact only if every margin exceeds `APPEARANCE_DISTANCE` plus the noise.
    """
    gains = np.linspace(MIN_GAIN, MAX_GAIN, 21)
    margins = {}
    for name, color in CONTEXT_COLORS.items():
        lit = np.asarray(color, dtype=np.float64)[None, :] * gains[:, None]
        distances, _ = segment_distances(lit)
        margins[name] = float(distances.min())
    return margins
