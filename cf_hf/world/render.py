"""The procedural renderer of the professions world: small RGB scenes of a person at work.

A scene is a `Scene` (all its random choices, drawn once from a seed by `sample_scene`) and an
image is `render(scene)`. Scenes are drawn in *scene units* on a 32 x 32 stage; a view (centre and
zoom, set by the framing decorator and a random offset) maps the stage onto the image, so the same
scene can be a wide shot, a medium shot or a close-up with little context.

What tells professions apart is the **context**: four settings (hospital, kitchen, street,
school), each shared by a pair of professions, and one **prop** per profession, drawn with
probability `PROP_PROBABILITY` — without it the two professions of a pair look alike. Attire
colors belong to the setting, so both professions of a pair wear the same ones.

The **person** carries the sensitive attributes, drawn in the colors reserved by `palette`:
gender presentation as hair length (long for "female", short for "male"), skin tone (four tones,
standing in for race groups) on face, neck and forearms, and age as hair color (dark or grey).
Attire (torso, sleeves, trousers) is context and is never part of the appearance.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .palette import CAMERA_NOISE, CONTEXT_COLORS, HAIR_COLORS, LIGHTING_GAINS, SKIN_TONES

STAGE = 32.0  # the stage is STAGE x STAGE scene units
DEFAULT_IMAGE_SIZE = 32
PROP_PROBABILITY = 0.6
# Distance (scene units) between the person and the prop.
PROP_DISTANCE = (7.5, 10.0)

# Pixel labels of the renderer's ground truth.
BACKGROUND, PROP, ATTIRE, HAIR, FACE, ARMS = range(6)
LABEL_NAMES = ("background", "prop", "attire", "hair", "face", "arms")
APPEARANCE_LABELS = (HAIR, FACE, ARMS)

GENDERS = ("female", "male")
AGES = tuple(HAIR_COLORS)
SKIN_TONE_NAMES = tuple(SKIN_TONES)
# The attributes of a person and their values (the world's attribute grid).
ATTRIBUTE_VALUES = {"gender": GENDERS, "skin_tone": SKIN_TONE_NAMES, "age": AGES}

# profession -> setting; the two professions of a setting differ only by their prop.
PROFESSION_SETTINGS: dict[str, str] = {
    "doctor": "hospital",
    "nurse": "hospital",
    "chef": "kitchen",
    "baker": "kitchen",
    "firefighter": "street",
    "police officer": "street",
    "teacher": "school",
    "librarian": "school",
}
PROFESSIONS = tuple(PROFESSION_SETTINGS)
SETTINGS = ("hospital", "kitchen", "street", "school")
PLAIN = "plain"
SETTING_ATTIRE: dict[str, tuple[str, ...]] = {
    "hospital": ("coat_white", "scrubs_teal"),
    "kitchen": ("apron_white", "apron_red"),
    "street": ("uniform_navy", "uniform_olive"),
    "school": ("cardigan_purple", "shirt_green"),
    PLAIN: ("casual_blue", "casual_maroon", "casual_green", "casual_violet"),
}

# Framing decorators: zoom of the view, and where the view centres relative to the head
# (scene units below the head centre; None = the middle of the stage).
FRAMINGS: dict[str, tuple[float, float | None]] = {
    "wide shot": (1.0, None),
    "full-body shot": (1.1, 9.0),
    "medium shot": (1.45, 6.0),
    "three-quarter view": (1.6, 5.0),
    "close-up": (2.3, 3.2),
}
CLOSE_UP = "close-up"
# Head radius in scene units (the figure is about 7.9 radii tall) and its random spread.
HEAD_RADIUS = 3.0
HEAD_RADIUS_SPREAD = 0.12
# Random framing offset, in scene units (the "framing offset" decorator of the real pipeline).
VIEW_JITTER = 1.5


@dataclass(frozen=True)
class Person:
    """The sensitive attributes of the person in a scene."""

    gender: str
    skin_tone: str
    age: str

    def __post_init__(self):
        for name, value, allowed in (
            ("gender", self.gender, GENDERS),
            ("skin_tone", self.skin_tone, SKIN_TONE_NAMES),
            ("age", self.age, AGES),
        ):
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}: the world draws {list(allowed)}")

    def as_dict(self) -> dict[str, str]:
        return {"gender": self.gender, "skin_tone": self.skin_tone, "age": self.age}


@dataclass(frozen=True)
class Scene:
    """Every random choice of one image; `render` is a pure function of it."""

    setting: str  # one of SETTINGS, or PLAIN for a portrait on the plain backdrop
    person: Person
    prop: str | None = None  # the profession whose prop is drawn, if any
    person_x: float = 16.0  # head centre, scene units
    head_y: float = 8.5
    head_radius: float = HEAD_RADIUS
    prop_x: float = 24.0
    attire: str = "coat_white"
    framing: str = "wide shot"
    lighting: str = "soft light"
    camera: str = "clean photo"
    view_offset: tuple[float, float] = (0.0, 0.0)
    noise_seed: int = 0

    def with_person(self, person: Person) -> Scene:
        return replace(self, person=person)


# ---------------------------------------------------------------------------------------------
# Sampling


def sample_person(rng: np.random.Generator) -> Person:
    """A person with every attribute drawn uniformly."""
    return Person(
        gender=GENDERS[rng.integers(len(GENDERS))],
        skin_tone=SKIN_TONE_NAMES[rng.integers(len(SKIN_TONE_NAMES))],
        age=AGES[rng.integers(len(AGES))],
    )


def sample_scene(
    setting: str,
    person: Person,
    rng: np.random.Generator,
    profession: str | None = None,
    prop_probability: float = PROP_PROBABILITY,
    decorators: dict[str, str] | None = None,
) -> Scene:
    """Draw a scene of `setting` (or PLAIN) with `person`; decorators not given are drawn uniformly.

    `profession` picks the prop (drawn with `prop_probability`); portraits on PLAIN have none.
    Decorator fields the world does not know (e.g. "style") are ignored.
    """
    decorators = dict(decorators or {})
    choices = {"framing": FRAMINGS, "lighting": LIGHTING_GAINS, "camera": CAMERA_NOISE}
    chosen = {}
    for name, table in choices.items():
        value = decorators.get(name)
        if value is None:
            value = list(table)[rng.integers(len(table))]
        elif value not in table:
            raise ValueError(f"the world has no {name} {value!r}: use one of {list(table)}")
        chosen[name] = value
    if setting != PLAIN and setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}: use one of {list(SETTINGS) + [PLAIN]}")
    has_prop = setting != PLAIN and profession is not None and rng.random() < prop_probability
    person_x = float(rng.uniform(8.0, 24.0))
    # The prop stands beside the person, towards the middle of the stage: close enough to stay in
    # view in medium shots, mostly out of view in close-ups.
    side = 1.0 if person_x < STAGE / 2 else -1.0
    prop_x = float(person_x + side * rng.uniform(*PROP_DISTANCE))
    attire_options = SETTING_ATTIRE[setting]
    return Scene(
        setting=setting,
        person=person,
        prop=profession if has_prop else None,
        person_x=person_x,
        head_y=float(rng.uniform(7.5, 9.0)),
        head_radius=float(HEAD_RADIUS * (1.0 + rng.uniform(-HEAD_RADIUS_SPREAD, HEAD_RADIUS_SPREAD))),
        prop_x=prop_x,
        attire=attire_options[rng.integers(len(attire_options))],
        framing=chosen["framing"],
        lighting=chosen["lighting"],
        camera=chosen["camera"],
        view_offset=(
            float(rng.uniform(-VIEW_JITTER, VIEW_JITTER)),
            float(rng.uniform(-VIEW_JITTER, VIEW_JITTER)),
        ),
        noise_seed=int(rng.integers(2**31)),
    )


# ---------------------------------------------------------------------------------------------
# Geometry of the view


def view_transform(scene: Scene, size: int) -> tuple[float, float, float]:
    """(pixels per scene unit, stage x at the image centre, stage y at the image centre).

    The view is shifted, if needed, so that the whole head stays inside the image.
    """
    zoom, below_head = FRAMINGS[scene.framing]
    scale = zoom * size / STAGE
    if below_head is None:
        centre_x, centre_y = STAGE / 2, STAGE / 2
    else:
        centre_x, centre_y = scene.person_x, scene.head_y + below_head
    centre_x += scene.view_offset[0]
    centre_y += scene.view_offset[1]
    half = size / (2 * scale)  # half the view, in scene units
    margin = 1.4 * scene.head_radius
    centre_x = float(np.clip(centre_x, scene.person_x + margin - half, scene.person_x - margin + half))
    centre_y = float(np.clip(centre_y, scene.head_y + margin - half, scene.head_y - 1.2 * margin + half))
    return scale, centre_x, centre_y


def head_in_pixels(scene: Scene, size: int) -> tuple[float, float, float]:
    """(column, row, radius) of the head in pixel units (pixel centres at +0.5)."""
    scale, centre_x, centre_y = view_transform(scene, size)
    column = (scene.person_x - centre_x) * scale + size / 2
    row = (scene.head_y - centre_y) * scale + size / 2
    return column, row, scene.head_radius * scale


def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(columns, rows) of the pixel centres, each (size, size)."""
    centres = np.arange(size) + 0.5
    return np.meshgrid(centres, centres)


# ---------------------------------------------------------------------------------------------
# Drawing


def _rect(x, y, left, top, right, bottom):
    return (x >= left) & (x < right) & (y >= top) & (y < bottom)


def _ellipse(x, y, centre_x, centre_y, radius_x, radius_y):
    return ((x - centre_x) / radius_x) ** 2 + ((y - centre_y) / radius_y) ** 2 <= 1.0


class _Canvas:
    """Unlit RGB canvas plus the label map, painted in order (later shapes cover earlier ones)."""

    def __init__(self, size: int):
        self.rgb = np.zeros((size, size, 3), dtype=np.float64)
        self.labels = np.zeros((size, size), dtype=np.uint8)

    def paint(self, mask, color, label: int = BACKGROUND):
        if isinstance(color, str):
            color = CONTEXT_COLORS[color]
        self.rgb[mask] = color
        self.labels[mask] = label


def _draw_setting(canvas: _Canvas, setting: str, x, y) -> None:
    """The background of a setting, on the whole (infinite) plane."""
    if setting == "hospital":
        canvas.paint(np.ones_like(x, dtype=bool), "hospital_wall")
        canvas.paint(y >= 20, "hospital_floor")
        canvas.paint(_rect(x, y, 2, 3, 10, 11), "window_frame")
        canvas.paint(_rect(x, y, 3, 4, 9, 10), "window")
        canvas.paint(_rect(x, y, 18, 17, 31, 21), "bed")
        canvas.paint(_rect(x, y, 18, 21, 31, 23) | _rect(x, y, 18, 14, 19.5, 25), "bed_frame")
    elif setting == "kitchen":
        canvas.paint(np.ones_like(x, dtype=bool), "tile")
        grout = (np.mod(x, 4.0) < 0.6) | (np.mod(y, 4.0) < 0.6)
        canvas.paint(grout & (y < 18), "grout")
        canvas.paint(y >= 18, "counter")
        canvas.paint(y >= 21, "cabinet")
        canvas.paint(_rect(x, y, 13, 16.5, 19, 18), "stove")
    elif setting == "street":
        canvas.paint(np.ones_like(x, dtype=bool), "sky")
        canvas.paint(_rect(x, y, -40, 1, 15, 22) | _rect(x, y, 24, 4, 60, 22), "building")
        windows = (np.mod(x, 4.0) > 1.5) & (np.mod(y, 5.0) > 2.5)
        canvas.paint(windows & (_rect(x, y, -40, 2, 14, 20) | _rect(x, y, 25, 5, 60, 20)), "building_window")
        canvas.paint(y >= 22, "road")
        canvas.paint((y >= 27) & (y < 27.8) & (np.mod(x, 6.0) < 3.0), "lane_mark")
    elif setting == "school":
        canvas.paint(np.ones_like(x, dtype=bool), "school_wall")
        canvas.paint(y >= 21, "school_floor")
        canvas.paint(_ellipse(x, y, 16, 3, 1.8, 1.8), "clock")
    elif setting == PLAIN:
        canvas.paint(np.ones_like(x, dtype=bool), "plain")
        canvas.paint(y >= 24, "plain_shade")
    else:
        raise ValueError(f"unknown setting {setting!r}")


def _draw_prop(canvas: _Canvas, profession: str, x, y, at: float) -> None:
    """The prop that tells a profession from its pair, centred on stage column `at`."""
    if profession == "doctor":  # a red-cross sign on the wall
        canvas.paint(_rect(x, y, at - 3, 3, at + 3, 9), "sign_white", PROP)
        cross = _rect(x, y, at - 2.2, 5.2, at + 2.2, 6.8) | _rect(x, y, at - 0.8, 3.8, at + 0.8, 8.2)
        canvas.paint(cross, "cross_red", PROP)
    elif profession == "nurse":  # an IV stand with its bag
        canvas.paint(
            _rect(x, y, at - 0.5, 5, at + 0.5, 24) | _rect(x, y, at - 2.5, 23, at + 2.5, 24.5),
            "iv_pole",
            PROP,
        )
        canvas.paint(_rect(x, y, at - 1.8, 6, at + 1.8, 11), "iv_bag", PROP)
    elif profession == "chef":  # a steaming pot on the counter
        canvas.paint(_rect(x, y, at - 3.5, 13, at + 3.5, 18), "pot", PROP)
        steam = _ellipse(x, y, at - 1.5, 10.5, 1.4, 1.1) | _ellipse(x, y, at + 1.2, 8.5, 1.5, 1.2)
        canvas.paint(steam, "steam", PROP)
    elif profession == "baker":  # a layered cake with a cherry
        canvas.paint(_rect(x, y, at - 3.5, 13, at + 3.5, 18), "cake", PROP)
        canvas.paint(
            _rect(x, y, at - 3.5, 15, at + 3.5, 16) | _rect(x, y, at - 3.5, 12, at + 3.5, 13), "cream", PROP
        )
        canvas.paint(_ellipse(x, y, at, 11, 1.0, 1.0), "cherry", PROP)
    elif profession == "firefighter":  # a fire truck with a ladder
        canvas.paint(_rect(x, y, at - 7, 16, at + 7, 24), "truck_red", PROP)
        canvas.paint(
            _rect(x, y, at - 6, 14.5, at + 5, 15.5) | _rect(x, y, at - 6, 14.5, at - 5, 16), "ladder", PROP
        )
        wheels = _ellipse(x, y, at - 4, 24, 1.8, 1.8) | _ellipse(x, y, at + 4, 24, 1.8, 1.8)
        canvas.paint(wheels, "wheel", PROP)
    elif profession == "police officer":  # a police car with its lights
        canvas.paint(_rect(x, y, at - 6, 19, at + 6, 24), "police_blue", PROP)
        canvas.paint(_rect(x, y, at - 3.5, 16.5, at + 3.5, 19), "police_roof", PROP)
        canvas.paint(_rect(x, y, at - 2.5, 15.5, at, 16.5), "siren_red", PROP)
        canvas.paint(_rect(x, y, at, 15.5, at + 2.5, 16.5), "siren_blue", PROP)
        wheels = _ellipse(x, y, at - 3.5, 24, 1.5, 1.5) | _ellipse(x, y, at + 3.5, 24, 1.5, 1.5)
        canvas.paint(wheels, "wheel", PROP)
    elif profession == "teacher":  # a chalkboard with writing
        canvas.paint(_rect(x, y, at - 5, 5, at + 5, 14), "board_frame", PROP)
        canvas.paint(_rect(x, y, at - 4.3, 5.7, at + 4.3, 13.3), "chalkboard", PROP)
        lines = _rect(x, y, at - 3.5, 7.5, at + 2.5, 8.3) | _rect(x, y, at - 3.5, 10, at + 3, 10.8)
        canvas.paint(lines, "chalk", PROP)
    elif profession == "librarian":  # a bookshelf
        canvas.paint(_rect(x, y, at - 4.5, 3, at + 4.5, 21), "shelf", PROP)
        books = ("book_red", "book_blue", "book_green", "book_teal")
        for shelf_top in (4.0, 10.0, 16.0):
            for index in range(7):
                left = at - 4.0 + index * 1.15
                canvas.paint(
                    _rect(x, y, left, shelf_top, left + 0.9, shelf_top + 4.5),
                    books[(index + int(shelf_top)) % 4],
                    PROP,
                )
    else:
        raise ValueError(f"unknown profession {profession!r}: the world has {list(PROFESSIONS)}")


def appearance_shapes(columns, rows, centre_x: float, centre_y: float, radius: float, gender: str):
    """The person's appearance shapes in pixel space, in drawing order: [(label, mask), ...].

    Hair first, then neck and face on top of it. Long hair ("female") frames the face and falls to
    the shoulders; short hair ("male") is a cap. Both fit inside `appearance_envelope`.
    """
    hair = _ellipse(columns, rows, centre_x, centre_y - 0.3 * radius, 1.05 * radius, 0.8 * radius)
    if gender == "female":
        hair = hair | _rect(
            columns,
            rows,
            centre_x - 1.05 * radius,
            centre_y - 0.3 * radius,
            centre_x + 1.05 * radius,
            centre_y + 1.6 * radius,
        )
    neck = _rect(
        columns,
        rows,
        centre_x - 0.35 * radius,
        centre_y + 0.7 * radius,
        centre_x + 0.35 * radius,
        centre_y + 1.3 * radius,
    )
    face = _ellipse(columns, rows, centre_x, centre_y + 0.12 * radius, 0.82 * radius, 0.88 * radius)
    return [(HAIR, hair), (FACE, neck), (FACE, face)]


def appearance_envelope(columns, rows, centre_x: float, centre_y: float, radius: float, margin: float = 0.0):
    """Every pixel that hair, face or neck can cover, whatever the hair style (plus `margin` px)."""
    cap = _ellipse(
        columns, rows, centre_x, centre_y - 0.3 * radius, 1.05 * radius + margin, 0.8 * radius + margin
    )
    body = _rect(
        columns, rows,
        centre_x - 1.05 * radius - margin, centre_y - 0.3 * radius,
        centre_x + 1.05 * radius + margin, centre_y + 1.6 * radius + margin,
    )  # fmt: skip
    return cap | body


def _draw_person(canvas: _Canvas, scene: Scene, columns, rows, size: int) -> None:
    centre_x, centre_y, radius = head_in_pixels(scene, size)
    attire = scene.attire
    torso = _rect(
        columns,
        rows,
        centre_x - 1.4 * radius,
        centre_y + 1.15 * radius,
        centre_x + 1.4 * radius,
        centre_y + 4.3 * radius,
    )
    legs = _rect(
        columns,
        rows,
        centre_x - 1.2 * radius,
        centre_y + 4.3 * radius,
        centre_x - 0.15 * radius,
        centre_y + 6.8 * radius,
    ) | _rect(
        columns,
        rows,
        centre_x + 0.15 * radius,
        centre_y + 4.3 * radius,
        centre_x + 1.2 * radius,
        centre_y + 6.8 * radius,
    )
    canvas.paint(legs, "trousers_slate", ATTIRE)
    canvas.paint(torso, attire, ATTIRE)
    for side in (-1.0, 1.0):
        inner, outer = centre_x + side * 1.4 * radius, centre_x + side * 1.95 * radius
        left, right = min(inner, outer), max(inner, outer)
        canvas.paint(
            _rect(columns, rows, left, centre_y + 1.3 * radius, right, centre_y + 2.3 * radius),
            attire,
            ATTIRE,
        )
        canvas.paint(
            _rect(columns, rows, left, centre_y + 2.3 * radius, right, centre_y + 3.9 * radius),
            SKIN_TONES[scene.person.skin_tone],
            ARMS,
        )
    hair_color = HAIR_COLORS[scene.person.age]
    skin = SKIN_TONES[scene.person.skin_tone]
    for label, mask in appearance_shapes(columns, rows, centre_x, centre_y, radius, scene.person.gender):
        canvas.paint(mask, hair_color if label == HAIR else skin, label)


def light_and_noise(rgb: np.ndarray, gain: float, noise_std: float, seed: int) -> np.ndarray:
    """Apply lighting (one gain) and camera noise to unlit float RGB; returns uint8 (H, W, 3)."""
    lit = rgb * gain
    if noise_std > 0:
        lit = lit + np.random.default_rng(seed).normal(0.0, noise_std, size=lit.shape)
    return np.clip(np.rint(lit), 0, 255).astype(np.uint8)


def render(scene: Scene, size: int = DEFAULT_IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Draw a scene.

    Returns:
        image (size, size, 3) uint8 and labels (size, size) uint8 (see LABEL_NAMES).
    """
    columns, rows = pixel_grid(size)
    scale, centre_x, centre_y = view_transform(scene, size)
    stage_x = (columns - size / 2) / scale + centre_x
    stage_y = (rows - size / 2) / scale + centre_y
    canvas = _Canvas(size)
    _draw_setting(canvas, scene.setting, stage_x, stage_y)
    if scene.prop is not None:
        _draw_prop(canvas, scene.prop, stage_x, stage_y, scene.prop_x)
    _draw_person(canvas, scene, columns, rows, size)
    image = light_and_noise(
        canvas.rgb, LIGHTING_GAINS[scene.lighting], CAMERA_NOISE[scene.camera], scene.noise_seed
    )
    return image, canvas.labels
