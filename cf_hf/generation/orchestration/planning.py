"""The plan of a run, fixed up front from the config and the seed alone: every base image has a
fixed `group_id`, seed and decorator draw, every counterfactual a fixed grid cell and seed. Work is
cut into shards of `shard_size` base images; with several processes, process `i` takes shards
`i, i + n, ...`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cf_hf.generation.base_images import decorated_prompt, draw_decorators
from cf_hf.generation.interfaces import Concept, ImageRequest
from cf_hf.generation.orchestration.config import GenerationConfig
from cf_hf.generation.runtime import derive_seed


@dataclass(frozen=True)
class PlannedBase:
    """One base image to make, and the counterfactuals to paint from it."""

    group_id: str
    concept: Concept
    request: ImageRequest
    appearances: tuple[dict[str, str], ...]
    appearance_seeds: tuple[int, ...]


def plan_bases(config: GenerationConfig, captions: Mapping[str, Sequence[str]]) -> list[PlannedBase]:
    """Every base image of the run, in order (concept, caption, decorator draw), from the config,
    the seed and the captions alone."""
    cells = config.attribute_grid.cells()
    plan = []
    for concept_index, concept in enumerate(config.concepts):
        order = list(range(len(cells)))
        np.random.default_rng(derive_seed(config.seed, "grid", concept.name)).shuffle(order)
        per_base = config.appearances_per_base or len(cells)
        for caption_index, caption in enumerate(captions[concept.name]):
            for draw in range(config.decorators_per_caption):
                base_index = caption_index * config.decorators_per_caption + draw
                group_id = f"{concept_index:04d}-{base_index:06d}"
                decorators = draw_decorators(config.decorators, derive_seed(config.seed, "decorators", group_id))
                request = ImageRequest(
                    concept=concept.name,
                    caption=caption,
                    prompt=decorated_prompt(caption, decorators),
                    seed=derive_seed(config.seed, "base", group_id),
                    decorators=decorators,
                )
                if per_base == len(cells):
                    chosen = list(range(len(cells)))
                else:  # consecutive windows of the permutation: each cell equally often
                    chosen = [order[(base_index * per_base + k) % len(cells)] for k in range(per_base)]
                plan.append(
                    PlannedBase(
                        group_id=group_id,
                        concept=concept,
                        request=request,
                        appearances=tuple(cells[cell] for cell in chosen),
                        appearance_seeds=tuple(derive_seed(config.seed, "counterfactual", group_id, cell) for cell in chosen),
                    )
                )
    return plan


def shard_bases(config: GenerationConfig, plan: Sequence[PlannedBase], shard: int) -> Sequence[PlannedBase]:
    """The base images of shard `shard`: `config.shard_size` consecutive entries of the plan."""
    return plan[shard * config.shard_size : (shard + 1) * config.shard_size]


def process_shards(config: GenerationConfig, state) -> range:
    """The shards process `state.process_index` of `state.num_processes` generates."""
    return range(state.process_index, config.num_shards, state.num_processes)
