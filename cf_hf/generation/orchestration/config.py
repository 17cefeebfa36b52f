"""What to generate: `GenerationConfig`, its validation, and the columns of the run it describes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from cf_hf.concepts import AttributeGrid
from cf_hf.generation.interfaces import Concept
from cf_hf.generation.masks import MaskPostprocessing

# Columns every row has; attribute columns and `decorator_<field>` columns come in between.
RESERVED_COLUMNS = (
    "image", "caption", "concept", "group_id", "is_base", "seed", "mask_area", "prompt", "source_model",
)  # fmt: skip
DECORATOR_PREFIX = "decorator_"


@dataclass
class GenerationConfig:
    """What to generate. Everything here except the batch sizes determines the data and enters the
    run's fingerprint; batch sizes only change how work is grouped into calls.

    `decorators_per_caption` base images are drawn per caption, each with its own decorator values;
    `appearances_per_base` grid cells are painted per base image (None: the whole grid), cycling
    through a seeded permutation of the grid so that cells stay balanced within each concept.
    """

    concepts: Sequence[Concept]
    attribute_grid: AttributeGrid
    decorators: Mapping[str, Sequence[str]] = field(default_factory=dict)
    captions_per_concept: int = 4
    decorators_per_caption: int = 2
    appearances_per_base: int | None = None
    seed: int = 0
    shard_size: int = 8
    mask_postprocessing: MaskPostprocessing = field(default_factory=MaskPostprocessing)
    text_to_image_batch_size: int = 4
    segmentation_batch_size: int = 8
    inpainting_batch_size: int = 4

    def __post_init__(self):
        self.concepts = list(self.concepts)
        self.decorators = {name: tuple(values) for name, values in self.decorators.items()}
        if not self.concepts:
            raise ValueError("no concepts to generate.")
        names = [concept.name for concept in self.concepts]
        if len(set(names)) != len(names):
            raise ValueError(f"concepts listed twice: {sorted({n for n in names if names.count(n) > 1})}.")
        for name in ("captions_per_concept", "decorators_per_caption", "shard_size",
                     "text_to_image_batch_size", "segmentation_batch_size", "inpainting_batch_size"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}.")
        cells = len(self.attribute_grid.cells())
        if self.appearances_per_base is not None and not 1 <= self.appearances_per_base <= cells:
            raise ValueError(f"appearances_per_base must be between 1 and the grid's {cells} cells.")
        columns = set(RESERVED_COLUMNS) | {DECORATOR_PREFIX + name for name in self.decorators}
        clashes = sorted(set(self.attribute_grid.names) & columns)
        if clashes:
            raise ValueError(f"attribute names {clashes} clash with dataset columns; rename them.")
        for name, values in self.decorators.items():
            if not values:
                raise ValueError(f"decorator field {name!r} has no values.")

    def content(self) -> dict:
        """The part of the config that determines the data (JSON-serialisable)."""
        return {
            "concepts": [asdict(concept) for concept in self.concepts],
            "attribute_grid": self.attribute_grid.to_dict(),
            "decorators": {name: list(values) for name, values in self.decorators.items()},
            "captions_per_concept": self.captions_per_concept,
            "decorators_per_caption": self.decorators_per_caption,
            "appearances_per_base": self.appearances_per_base,
            "seed": self.seed,
            "shard_size": self.shard_size,
            "mask_postprocessing": asdict(self.mask_postprocessing),
        }

    @property
    def num_bases(self) -> int:
        return len(self.concepts) * self.captions_per_concept * self.decorators_per_caption

    @property
    def num_shards(self) -> int:
        return -(-self.num_bases // self.shard_size)


def run_schema(config: GenerationConfig):
    """The `pyarrow` schema of a run's shards (one row per image; images as PNG bytes)."""
    import pyarrow as pa

    return pa.schema(
        [("image", pa.binary()), ("caption", pa.string()), ("concept", pa.string()),
         ("group_id", pa.string()), ("is_base", pa.bool_())]
        + [(name, pa.string()) for name in config.attribute_grid.names]
        + [(DECORATOR_PREFIX + name, pa.string()) for name in config.decorators]
        + [("seed", pa.int64()), ("mask_area", pa.float32()), ("prompt", pa.string()), ("source_model", pa.string())]
    )  # fmt: skip
