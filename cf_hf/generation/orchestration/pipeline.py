"""The resumable glue: captions → base images → masks → counterfactuals → shards.

```python
report = generate(config, caption_writer=..., text_to_image=..., segmenter=..., inpainter=...,
                  output_dir="outputs/run")
```
takes any components implementing `cf_hf.generation.interfaces`, and makes what `planning` plans.
A shard is written (atomically) only when all its rows are done. A restarted run re-checks every
shard's checksum and generates only what is missing or corrupt, so the result is the same as an
uninterrupted run.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cf_hf.generation.inpainting import check_inpainting_pipeline
from cf_hf.generation.interfaces import (
    CaptionWriter,
    Inpainter,
    InpaintRequest,
    Segmenter,
    TextToImage,
    component_provenance,
)
from cf_hf.generation.orchestration.config import DECORATOR_PREFIX, GenerationConfig, run_schema
from cf_hf.generation.orchestration.distributed import (
    ProcessFailedError,
    distributed_state,
    raise_if_another_failed,
    record_failure,
    together,
    wait_for,
)
from cf_hf.generation.orchestration.planning import plan_bases, process_shards, shard_bases
from cf_hf.generation.run_folder import RUN_FORMAT, RUN_FORMAT_VERSION, RunFolder, RunFolderError
from cf_hf.generation.runtime import derive_seed
from cf_hf.utils.output_folder import MARKER_NAME as OUTPUT_MARKER

logger = logging.getLogger(__name__)

STAGES = ("captions", "base_images", "masks", "counterfactuals", "writing")


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
        elif folder.path.exists() and any(path.name != OUTPUT_MARKER for path in folder.path.iterdir()):
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

    existing = together(state, check_folder)  # every process has checked the folder before it changes
    together(state, prepare)

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
            record_failure(state, folder, error)
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
    wait_for(state, folder, lambda: all(
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
    for index in process_shards(config, state):
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
    bases_to_make = sum(len(shard_bases(config, plan, i)) for i in pending)
    stages.bar("base_images", bases_to_make, "base images")
    stages.bar("masks", bases_to_make, "masks")
    stages.bar("counterfactuals", sum(
        len(base.appearances) for i in pending for base in shard_bases(config, plan, i)
    ), "counterfactuals")  # fmt: skip
    text_to_image_model = _source_name(components["text_to_image"])
    inpainter_model = _source_name(components["inpainter"])
    for index in pending:
        if state.num_processes > 1:
            raise_if_another_failed(state, folder)
        bases = shard_bases(config, plan, index)
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

    wait_for(state, folder, ready)
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
