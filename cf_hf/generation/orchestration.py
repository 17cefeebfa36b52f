"""The resumable glue: captions → base images → masks → counterfactuals → shards.

```python
report = generate(config, caption_writer=..., text_to_image=..., segmenter=..., inpainter=...,
                  output_dir="outputs/run")
```
takes any components implementing `cf_hf.generation.interfaces`. What to generate is planned up
front from the config and the seed alone: every base image has a fixed `group_id`, seed and
decorator draw, every counterfactual a fixed grid cell and seed. Work is cut into shards of
`shard_size` base images; a shard is written (atomically) only when all its rows are done. A
restarted run re-checks every shard's checksum and generates only what is missing or corrupt,
so the result is the same as an uninterrupted run. With several processes (`accelerate launch`),
process `i` takes shards `i, i + n, ...`.

Several processes meet through collectives only while setting up, where they arrive within
seconds; after that, a process that has finished its share waits by polling the run folder for
the others' captions and shard receipts, however long they take (uneven shares are the rule after
a resume). A process that fails records its error in the run folder; every other process stops
with that error instead of waiting for work that will never come.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import numpy as np

from cf_hf.concepts import AttributeGrid
from cf_hf.generation.base_images import decorated_prompt, draw_decorators
from cf_hf.generation.inpainting import check_inpainting_pipeline
from cf_hf.generation.interfaces import (
    CaptionWriter,
    Concept,
    ImageRequest,
    Inpainter,
    InpaintRequest,
    Segmenter,
    TextToImage,
    component_provenance,
)
from cf_hf.generation.masks import MaskPostprocessing
from cf_hf.generation.run_folder import RUN_FORMAT, RUN_FORMAT_VERSION, RunFolder, RunFolderError
from cf_hf.generation.runtime import derive_seed

logger = logging.getLogger(__name__)

STAGES = ("captions", "base_images", "masks", "counterfactuals", "writing")
# Columns every row has; attribute columns and `decorator_<field>` columns come in between.
RESERVED_COLUMNS = (
    "image", "caption", "concept", "group_id", "is_base", "seed", "mask_area", "prompt", "source_model",
)  # fmt: skip
DECORATOR_PREFIX = "decorator_"
# Only the set-up meetings use collectives (the long stages poll the run folder), but checking the
# models may fetch their config files from the Hub first; NCCL's default (10 minutes) is too short.
PROCESS_GROUP_TIMEOUT = timedelta(hours=1)
# How often a waiting process looks at the run folder, and how long a failed process waits for
# the others to read its error before it exits (a launcher may kill them when it exits).
POLL_SECONDS = 1.0
FAILURE_GRACE_SECONDS = 30.0

_Result = TypeVar("_Result")


class ProcessFailedError(RuntimeError):
    """Another process of the run failed; the message is its error."""


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


@dataclass
class GenerationReport:
    """What a run holds (totals over all shards) and what this call did."""

    output_dir: Path
    complete: bool
    num_shards: int
    shards_generated: int = 0
    shards_resumed: int = 0
    shards_regenerated: int = 0
    captions_generated: int = 0
    base_images: int = 0
    counterfactuals: int = 0
    rejected: Counter = field(default_factory=Counter)
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    stage_items: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))

    def summary(self) -> str:
        """A table for the terminal: counts, skips by reason, and time per stage."""
        lines = [
            f"run folder        {self.output_dir}{'' if self.complete else '  (incomplete)'}",
            f"shards            {self.num_shards} ({self.shards_generated} generated now, "
            f"{self.shards_resumed} already done, {self.shards_regenerated} corrupt and regenerated)",
            f"base images       {self.base_images}",
            f"counterfactuals   {self.counterfactuals}",
            f"rows              {self.base_images + self.counterfactuals}",
            "skipped           " + (", ".join(f"{reason}: {n}" for reason, n in sorted(self.rejected.items())) or "none"),
            "",
            f"{'stage':<16}{'items':>8}{'seconds':>10}{'items/s':>10}",
        ]
        for stage in STAGES:
            seconds, items = self.stage_seconds[stage], self.stage_items[stage]
            rate = f"{items / seconds:10.2f}" if seconds > 0 else f"{'-':>10}"
            lines.append(f"{stage:<16}{items:>8}{seconds:>10.2f}{rate}")
        return "\n".join(lines)


class _SingleProcess:
    process_index = 0
    local_process_index = 0
    num_processes = 1
    is_main_process = True

    def wait_for_everyone(self) -> None:
        pass


def distributed_state():
    """`accelerate`'s process state when launched with it (process group timeout
    `PROCESS_GROUP_TIMEOUT`), a single process otherwise."""
    try:
        from accelerate import PartialState
        from accelerate.utils import InitProcessGroupKwargs
    except ImportError:
        return _SingleProcess()
    return PartialState(**InitProcessGroupKwargs(timeout=PROCESS_GROUP_TIMEOUT).to_kwargs())


def _describe_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _gather_errors(state, error: BaseException | None) -> list[str | None]:
    """Every process's error message (None where it succeeded); a collective, so a meeting point.
    Without a process group (one process, or a state object that only has a barrier) each
    process knows only its own."""
    message = None if error is None else _describe_error(error)
    if state.num_processes > 1:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            messages = [None] * state.num_processes
            dist.all_gather_object(messages, message)
            return messages
    state.wait_for_everyone()
    return [message if index == state.process_index else None for index in range(state.num_processes)]


def _together(state, action: Callable[[], _Result]) -> _Result:
    """Run `action` on every process, then meet: if it failed anywhere, it fails everywhere (with
    that process's error), rather than leaving the others waiting for it at the next meeting."""
    result, error = None, None
    try:
        result = action()
    except Exception as raised:
        error = raised
    messages = _gather_errors(state, error)
    if error is not None:
        raise error
    for index, message in enumerate(messages):
        if message is not None:
            raise ProcessFailedError(f"process {index} failed: {message}")
    return result


def _raise_if_another_failed(state, folder: RunFolder) -> None:
    for index, record in sorted(folder.process_records().items()):
        if index != state.process_index and record.get("status") == "failed":
            message = f"process {index} failed: {record.get('error')}"
            folder.write_process_record(state.process_index, "stopped", message)
            raise ProcessFailedError(message)


def _wait_for(state, folder: RunFolder, ready: Callable[[], bool]) -> None:
    """Poll the run folder until `ready()`; stop with another process's error if one failed."""
    while not ready():
        _raise_if_another_failed(state, folder)
        time.sleep(POLL_SECONDS)


def _record_failure(state, folder: RunFolder, error: BaseException) -> None:
    """Tell the other processes that this one failed, and give the waiting ones time to read it."""
    folder.write_process_record(state.process_index, "failed", _describe_error(error))
    deadline = time.monotonic() + FAILURE_GRACE_SECONDS

    def stopped() -> int:  # a "done" process still waits for this one's shards: it has not read the error yet
        return sum(record.get("status") != "done" for record in folder.process_records().values())

    while time.monotonic() < deadline and stopped() < state.num_processes:
        time.sleep(POLL_SECONDS / 5)


def _check_models(*components) -> None:
    """Each component that can tell (a `check_model()` method) checks that its model can be found;
    nothing is written before this passes, so a typo in a model id leaves no run behind."""
    for component in components:
        check = getattr(component, "check_model", None)
        if callable(check):
            check()


def _check_components(caption_writer, text_to_image, segmenter, inpainter) -> None:
    for name, component, protocol in (
        ("caption_writer", caption_writer, CaptionWriter),
        ("text_to_image", text_to_image, TextToImage),
        ("segmenter", segmenter, Segmenter),
        ("inpainter", inpainter, Inpainter),
    ):
        if not isinstance(component, protocol):
            raise TypeError(f"{name} must be callable as in cf_hf.generation.interfaces.{protocol.__name__}.")
    if any(kind.__name__ == "DiffusionPipeline" for kind in type(inpainter).__mro__):
        check_inpainting_pipeline(inpainter)  # a text-to-image pipeline: a clear "not inpainting" error
        raise TypeError(
            f"inpainter is a bare {type(inpainter).__name__}: wrap it, "
            "DiffusersInpainter(pipeline=...), so that requests map to the pipeline's arguments."
        )
    if any(kind.__name__ == "DiffusionPipeline" for kind in type(text_to_image).__mro__):
        raise TypeError(
            f"text_to_image is a bare {type(text_to_image).__name__}: wrap it, DiffusersTextToImage(pipeline=...)."
        )


def _fingerprint(content: dict) -> str:
    # Not sorted: reordering attributes or decorator fields changes the data, so the fingerprint.
    return hashlib.sha256(json.dumps(content).encode("utf-8")).hexdigest()[:16]


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    diffs = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            diffs.append(f"{prefix}{key}")
    return diffs


def _source_name(provenance: dict[str, str]) -> str:
    """What the `source_model` column says: the model id, else the component's class."""
    return provenance.get("model_id") or provenance.get("class") or json.dumps(provenance)


def _encode_png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _chunks(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


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


class _Stages:
    """Times each component call and advances the stage's progress bar."""

    def __init__(self, report: GenerationReport, show_progress: bool):
        self.report = report
        self.show_progress = show_progress
        self.bars: dict[str, object] = {}

    def bar(self, stage: str, total: int, description: str):
        from tqdm.auto import tqdm

        if stage not in self.bars:
            self.bars[stage] = tqdm(total=total, desc=description, unit="img", disable=not self.show_progress, position=len(self.bars), leave=True)
        return self.bars[stage]

    def run(self, stage: str, count: int, function: Callable, *arguments):
        """`function(*arguments)`, timed and counted as `count` items of `stage`."""
        start = time.perf_counter()
        result = function(*arguments)
        self.report.stage_seconds[stage] += time.perf_counter() - start
        self.report.stage_items[stage] += count
        if stage in self.bars:
            self.bars[stage].update(count)
        return result

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def generate(
    config: GenerationConfig,
    *,
    caption_writer: CaptionWriter,
    text_to_image: TextToImage,
    segmenter: Segmenter,
    inpainter: Inpainter,
    output_dir: str | Path,
    resume: bool = False,
    show_progress: bool = True,
    distributed=None,
) -> GenerationReport:
    """Generate (or finish) the counterfactual run described by `config` in `output_dir`.

    `resume=True` continues a run found in `output_dir`; without it, a folder that already holds
    this run is refused, so that nothing is overwritten by accident. A folder holding another run
    (different config or components) is always refused. A new run first calls each component's
    `check_model()` where it has one (`cf_hf.utils.model_loading.ModelLoadError` if a model cannot be found),
    so that a failed check writes nothing.

    `distributed` defaults to `accelerate`'s process state; any object with `process_index`,
    `num_processes`, `is_main_process` and `wait_for_everyone()` works. With several processes,
    an error in one makes the others raise `ProcessFailedError` with its message.
    """
    _check_components(caption_writer, text_to_image, segmenter, inpainter)
    state = distributed or distributed_state()
    folder = RunFolder(output_dir)
    components = {
        "caption_writer": component_provenance(caption_writer),
        "text_to_image": component_provenance(text_to_image),
        "segmenter": component_provenance(segmenter),
        "inpainter": component_provenance(inpainter),
    }
    identity = {"config": config.content(), "components": components}
    fingerprint = _fingerprint(identity)

    def check_folder() -> dict | None:
        existing = folder.read_manifest()
        if existing is not None:
            if existing.get("fingerprint") != fingerprint:
                old = {"config": existing.get("config", {}), "components": existing.get("components", {})}
                raise RunFolderError(
                    f"{folder.path} holds another run (fingerprint {existing.get('fingerprint')}, this one "
                    f"{fingerprint}; differs in: {', '.join(_differences(old, identity)) or 'format'}). "
                    "Choose an empty output folder, or remove that run."
                )
            if not resume:
                raise RunFolderError(f"{folder.path} already holds this run: pass resume=True (--resume) to continue it.")
        elif folder.path.exists() and any(folder.path.iterdir()):
            raise RunFolderError(f"{folder.path} is not empty and holds no cf_hf run manifest: choose an empty folder.")
        else:
            _check_models(caption_writer, text_to_image, segmenter, inpainter)
        return existing

    def prepare() -> None:
        if state.is_main_process:
            if existing is None:
                folder.write_manifest(
                    {"format": RUN_FORMAT, "version": RUN_FORMAT_VERSION, "fingerprint": fingerprint,
                     "num_shards": config.num_shards, "complete": False, **identity}
                )  # fmt: skip
            folder.clean_temporary_files()
            folder.clear_process_records()

    existing = _together(state, check_folder)  # every process has checked the folder before it changes
    _together(state, prepare)

    report = GenerationReport(folder.path, complete=False, num_shards=config.num_shards)
    stages = _Stages(report, show_progress and state.is_main_process)
    several = state.num_processes > 1
    try:
        captions = _captions_stage(config, folder, caption_writer, state, stages)
        plan = plan_bases(config, captions)
        _shards_stage(config, folder, plan, components, state, stages, text_to_image, segmenter, inpainter)
        if several:
            folder.write_process_record(state.process_index, "done")
        receipts = _wait_for_shards(config, folder, state)
    except ProcessFailedError:
        raise
    except Exception as error:
        if several:
            _record_failure(state, folder, error)
        raise
    finally:
        stages.close()
    _finish(config, folder, fingerprint, state, report, receipts)
    return report


def _captions_stage(config, folder: RunFolder, caption_writer, state, stages: _Stages) -> dict[str, list[str]]:
    missing = [
        (index, concept)
        for index, concept in enumerate(config.concepts)
        if index % state.num_processes == state.process_index
        and folder.read_captions(index, concept.name, config.captions_per_concept) is None
    ]
    if missing:
        stages.bar("captions", len(missing), "captions (concepts)")
    for index, concept in missing:
        seed = derive_seed(config.seed, "captions", concept.name)
        captions = stages.run("captions", 1, caption_writer, concept, config.captions_per_concept, seed)
        if len(captions) != config.captions_per_concept:
            raise ValueError(
                f"the caption writer returned {len(captions)} captions for {concept.name!r}, "
                f"expected {config.captions_per_concept}."
            )
        folder.write_captions(index, concept.name, captions)
        stages.report.captions_generated += len(captions)
    # The language model is not needed again: free its memory before the diffusion models load.
    release = getattr(caption_writer, "release", None)
    if callable(release):
        release()
    _wait_for(state, folder, lambda: all(
        folder.read_captions(index, concept.name, config.captions_per_concept) is not None
        for index, concept in enumerate(config.concepts)
    ))  # fmt: skip
    captions = {}
    for index, concept in enumerate(config.concepts):
        stored = folder.read_captions(index, concept.name, config.captions_per_concept)
        if stored is None:
            raise RunFolderError(f"captions of {concept.name!r} are missing after the caption stage.")
        captions[concept.name] = stored
    return captions


def _shards_stage(config, folder, plan, components, state, stages, text_to_image, segmenter, inpainter) -> None:
    report = stages.report
    pending = []
    for index in range(state.process_index, config.num_shards, state.num_processes):
        status, _ = folder.shard_status(index)
        if status == "finished":
            report.shards_resumed += 1
        else:
            if status == "corrupt":
                logger.warning("%s is corrupt: regenerating it", folder.shard_path(index))
                report.shards_regenerated += 1
            pending.append(index)
    if not pending:
        return
    bases_to_make = sum(len(plan[i * config.shard_size : (i + 1) * config.shard_size]) for i in pending)
    stages.bar("base_images", bases_to_make, "base images")
    stages.bar("masks", bases_to_make, "masks")
    stages.bar("counterfactuals", sum(
        len(base.appearances) for i in pending for base in plan[i * config.shard_size : (i + 1) * config.shard_size]
    ), "counterfactuals")  # fmt: skip
    text_to_image_model = _source_name(components["text_to_image"])
    inpainter_model = _source_name(components["inpainter"])
    for index in pending:
        if state.num_processes > 1:
            _raise_if_another_failed(state, folder)
        bases = plan[index * config.shard_size : (index + 1) * config.shard_size]
        table, receipt = _make_shard(config, bases, stages, text_to_image, segmenter, inpainter,
                                     text_to_image_model, inpainter_model)  # fmt: skip
        start = time.perf_counter()
        folder.write_shard(index, table, receipt)
        report.stage_seconds["writing"] += time.perf_counter() - start
        report.stage_items["writing"] += table.num_rows
        report.shards_generated += 1


def _make_shard(config, bases, stages, text_to_image, segmenter, inpainter, text_to_image_model, inpainter_model):
    import pyarrow as pa

    images = []
    for chunk in _chunks([base.request for base in bases], config.text_to_image_batch_size):
        images += stages.run("base_images", len(chunk), text_to_image, chunk)
    raw_masks = []
    for chunk in _chunks(images, config.segmentation_batch_size):
        raw_masks += stages.run("masks", len(chunk), segmenter, chunk)
    masks = [config.mask_postprocessing(mask) for mask in raw_masks]

    accepted = [(base, image, mask) for base, image, mask in zip(bases, images, masks) if mask.rejection is None]
    rejected = {base.group_id: mask.rejection for base, mask in zip(bases, masks) if mask.rejection is not None}
    skipped_paintings = sum(len(base.appearances) for base, mask in zip(bases, masks) if mask.rejection is not None)
    if skipped_paintings and "counterfactuals" in stages.bars:
        bar = stages.bars["counterfactuals"]
        bar.total -= skipped_paintings
        bar.refresh()

    requests = [
        InpaintRequest(
            image=image,
            mask=mask.mask,
            appearance=appearance,
            prompt=config.attribute_grid.appearance_prompt(appearance, base.concept.name),
            caption=base.request.caption,
            concept=base.concept.name,
            seed=seed,
        )
        for base, image, mask in accepted
        for appearance, seed in zip(base.appearances, base.appearance_seeds)
    ]
    paintings = []
    for chunk in _chunks(requests, config.inpainting_batch_size):
        paintings += stages.run("counterfactuals", len(chunk), inpainter, chunk)

    rows = []
    painted = iter(zip(requests, paintings))
    empty_appearance = dict.fromkeys(config.attribute_grid.names)
    for base, image, mask in accepted:
        decorators = {DECORATOR_PREFIX + name: value for name, value in base.request.decorators.items()}
        common = {"caption": base.request.caption, "concept": base.concept.name, "group_id": base.group_id,
                  "mask_area": mask.area, **decorators}  # fmt: skip
        rows.append({"image": _encode_png(image), "is_base": True, **empty_appearance, **common,
                     "seed": base.request.seed, "prompt": base.request.prompt, "source_model": text_to_image_model})  # fmt: skip
        for _ in base.appearances:
            request, painting = next(painted)
            rows.append({"image": _encode_png(painting), "is_base": False, **request.appearance, **common,
                         "seed": request.seed, "prompt": request.prompt, "source_model": inpainter_model})  # fmt: skip
    table = pa.Table.from_pylist(rows, schema=run_schema(config))
    receipt = {
        "base_images": len(accepted),
        "counterfactuals": len(requests),
        "rejected": rejected,
    }
    return table, receipt


def _wait_for_shards(config, folder: RunFolder, state) -> list[dict]:
    """The receipts of the finished shards, once every shard is finished or every process is done
    (a shard can then only be missing if it was damaged after it was written)."""
    receipts: dict[int, dict] = {}

    def ready() -> bool:
        # Records first: a process writes its shards before it says it is done.
        records = folder.process_records() if state.num_processes > 1 else {}
        all_done = all(records.get(index, {}).get("status") == "done" for index in range(state.num_processes))
        for index in range(config.num_shards):
            if index not in receipts:
                status, receipt = folder.shard_status(index)
                if status == "finished":
                    receipts[index] = receipt
        return len(receipts) == config.num_shards or all_done

    _wait_for(state, folder, ready)
    return [receipts[index] for index in sorted(receipts)]


def _finish(config, folder: RunFolder, fingerprint: str, state, report: GenerationReport, receipts: list[dict]) -> None:
    """Totals from every finished shard; the main process seals the manifest once all are done."""
    for receipt in receipts:
        report.base_images += receipt["base_images"]
        report.counterfactuals += receipt["counterfactuals"]
        report.rejected.update(receipt["rejected"].values())
    report.complete = len(receipts) == config.num_shards
    if report.complete and state.is_main_process:
        manifest = folder.read_manifest()
        if manifest.get("fingerprint") != fingerprint:
            raise RunFolderError(f"{folder.manifest_path} changed during the run.")
        manifest.update(
            complete=True,
            shards=[{key: receipt[key] for key in ("shard", "sha256", "rows", "base_images", "counterfactuals")} for receipt in receipts],
            totals={"base_images": report.base_images, "counterfactuals": report.counterfactuals,
                    "rows": report.base_images + report.counterfactuals, "rejected": dict(sorted(report.rejected.items()))},
        )  # fmt: skip
        folder.write_manifest(manifest)
