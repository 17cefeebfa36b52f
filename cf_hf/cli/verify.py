"""`cf-hf verify RUN_OR_DATASET`: score every counterfactual, move the failures to a `rejected` split,
and write the generator's measured pass rates into the dataset card.

```bash
cf-hf verify outputs/run                       # a generation run: exported, verified, to outputs/run/dataset
cf-hf verify outputs/run/dataset --output_dir outputs/verified   # an exported dataset folder
cf-hf verify outputs/demo/seed-0/dataset --world # the professions world's components and its own CLIP
```
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cf_hf.cli.command import QUIET_HELP, Command
from cf_hf.cli.validation import require_in_range, require_positive
from cf_hf.generation.masks import APPEARANCE_LABELS, DEFAULT_SEGMENTATION_MODEL
from cf_hf.generation.verification.classifier import DEFAULT_CLASSIFIER_MODEL
from cf_hf.generation.verification.report import REJECTED_SPLIT
from cf_hf.generation.verification.scores import VerificationConfig

_DEFAULTS = VerificationConfig()
NO_SEGMENTER = "none"
CACHE_DIR = ".cf_hf_verification"
RECORD_NAME = ".cf_hf_verified.json"


@dataclass
class VerifyArguments:
    """The `cf-hf verify` options (the run or dataset folder may also come first, without its flag)."""

    run_or_dataset: str = field(metadata={"help": "A generation run folder (with manifest.json) or a dataset folder that datasets.load_dataset reads."})
    output_dir: str | None = field(default=None, metadata={"help": "Verified dataset folder; unset: <run>/dataset for a run, <dataset>-verified for a dataset."})
    world: bool = field(default=False, metadata={"help": "The professions world's verifier: its segmenter, pixel embeddings, its shipped original CLIP (unless --classifier_model names another) for the attributes it can judge and the pixel reader for the others."})
    classifier_model: str = field(default=DEFAULT_CLASSIFIER_MODEL, metadata={"help": "CLIP checkpoint of the zero-shot attribute classifier and the embeddings."})
    segmentation_model: str | None = field(default=None, metadata={"help": f"Human-parsing SegFormer for the person masks; unset: a run's own segmenter, else {DEFAULT_SEGMENTATION_MODEL}; '{NO_SEGMENTER}' skips the context and person checks."})
    mask_labels: list[str] | None = field(default=None, metadata={"help": f"Label names forming the person mask, space-separated, as cf-hf generate's; unset: a run's own, else {' '.join(APPEARANCE_LABELS)}. A run is verified with the mask it was generated with."})
    include_clothing: bool = field(default=False, metadata={"help": "With a dataset folder: the mask includes clothing, as cf-hf generate --include_clothing (a run records its own)."})
    zero_shot_prompts_file: str | None = field(default=None, metadata={"help": "Zero-shot prompts per attribute (YAML/JSON); unset: the shipped cf_hf/generation/verification/zero_shot_prompts.yaml."})
    attribute_grid_file: str | None = field(default=None, metadata={"help": "Attribute grid YAML/JSON of a dataset folder; unset: the shipped grid (the world's with --world). A run uses its own."})
    max_context_difference: float = field(default=_DEFAULTS.max_context_difference, metadata={"help": "Largest mean absolute pixel change outside the person (fraction of the range)."})
    min_context_ssim: float = field(default=_DEFAULTS.min_context_ssim, metadata={"help": "Smallest SSIM outside the person."})
    min_adherence: float = field(default=_DEFAULTS.min_adherence, metadata={"help": "Smallest probability of each requested attribute value."})
    min_person_area_ratio: float = field(default=_DEFAULTS.min_person_area_ratio, metadata={"help": "Smallest person area relative to the base image."})
    max_person_area_ratio: float = field(default=_DEFAULTS.max_person_area_ratio, metadata={"help": "Largest person area relative to the base image."})
    max_duplicate_similarity: float = field(default=_DEFAULTS.max_duplicate_similarity, metadata={"help": "Largest embedding cosine to the base image."})
    batch_size: int = field(default=_DEFAULTS.batch_size, metadata={"help": "Images per model call."})
    chunk_groups: int = field(default=_DEFAULTS.chunk_groups, metadata={"help": "Groups per resumable chunk."})
    device: str = field(default="cpu", metadata={"help": "cpu, cuda, cuda:1, mps."})
    dtype: Literal["float32", "float16", "bfloat16"] = field(default="float32", metadata={"help": "Compute dtype of the classifier."})
    test_size: float = field(default=0.1, metadata={"help": "A run's share of groups in the test split."})
    repo_id: str = field(default="org/they-are-all-doctors", metadata={"help": "Hub id written in the card's example."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an earlier cf-hf verify output (for a run: an earlier export) in the output folder; only what cf_hf wrote is deleted, a folder of other files is always refused."})
    quiet: bool = field(default=False, metadata={"aliases": ["--no_progress"], "help": QUIET_HELP})

    def verification_config(self, mask_settings: dict | None = None) -> VerificationConfig:
        mask = mask_settings or {}
        return VerificationConfig(
            max_context_difference=self.max_context_difference, min_context_ssim=self.min_context_ssim,
            min_adherence=self.min_adherence, min_person_area_ratio=self.min_person_area_ratio,
            max_person_area_ratio=self.max_person_area_ratio, max_duplicate_similarity=self.max_duplicate_similarity,
            mask_dilation=mask.get("dilation", _DEFAULTS.mask_dilation), mask_feather=mask.get("feather", _DEFAULTS.mask_feather),
            batch_size=self.batch_size, chunk_groups=self.chunk_groups,
        )  # fmt: skip


def grid_from_manifest(manifest: dict):
    """The run's `AttributeGrid`, as its manifest records it."""
    from cf_hf.concepts import Attribute, AttributeGrid

    recorded = manifest["config"]["attribute_grid"]
    attributes = tuple(Attribute(name, tuple(spec["values"]), dict(spec.get("phrases", {})))
                       for name, spec in recorded["attributes"].items())  # fmt: skip
    return AttributeGrid(attributes, recorded["prompt_template"])


def clip_attribute_classifier(grid, model_id: str | Path, *, device: str = "cpu", dtype: str = "float32",
                              batch_size: int = 64, prompts=None):  # fmt: skip
    """The zero-shot `CLIPAttributeClassifier` of a CLIP checkpoint, reading through an
    `EmbeddingEngine` (device, dtype, batch size) that loads on first use. `prompts`: a
    `ZeroShotPrompts` (default: the shipped file's)."""
    from cf_hf.generation.verification.classifier import CLIPAttributeClassifier

    def load_embedder():
        from cf_hf.evaluation.embedding import EmbeddingCache, EmbeddingConfig, EmbeddingEngine

        config = EmbeddingConfig(device=device, dtype=dtype, batch_size=batch_size, progress=False)
        return EmbeddingEngine.from_pretrained(model_id, config=config, cache=EmbeddingCache(memory_budget_mb=0))

    return CLIPAttributeClassifier(grid, load_embedder, model_id=str(model_id), dtype=dtype, prompts=prompts)


def verification_segmenter(args: VerifyArguments, run_segmenter: dict | None = None):
    """The verifier's segmenter: the run's own mask definition (`run_segmenter`, its manifest's
    segmenter record: model, revision, labels) when there is a run, else `--mask_labels` /
    `--include_clothing`; None with `--segmentation_model none`."""
    from cf_hf.generation.masks import SegformerSegmenter, mask_label_names
    from cf_hf.generation.runtime import resolve_dtype

    if args.segmentation_model == NO_SEGMENTER:
        return None
    dtype = resolve_dtype(args.dtype, args.device)
    if run_segmenter is not None and run_segmenter.get("labels"):
        recorded = tuple(run_segmenter["labels"].split(","))
        if args.mask_labels is not None and mask_label_names(args.mask_labels, args.include_clothing) != recorded:
            raise ValueError(f"--mask_labels {' '.join(args.mask_labels)}{' --include_clothing' if args.include_clothing else ''} "
                             f"differs from the mask the run was generated with ({' '.join(recorded)}): the verifier "
                             "uses the run's mask; leave --mask_labels unset")
        return SegformerSegmenter.from_provenance(run_segmenter, model_id=args.segmentation_model,
                                                  device=args.device, dtype=dtype)
    return SegformerSegmenter(args.segmentation_model or DEFAULT_SEGMENTATION_MODEL,
                              labels=args.mask_labels or APPEARANCE_LABELS, include_clothing=args.include_clothing,
                              device=args.device, dtype=dtype)


def build_verifier(args: VerifyArguments, grid, mask_settings: dict | None = None, run_segmenter: dict | None = None):
    """The `Verifier` the arguments describe (models load on first use). `mask_settings` and
    `run_segmenter`: a run's mask postprocessing and segmenter record (its manifest's), so that the
    verifier's person mask is the generation's."""
    from cf_hf.generation.verification.prompts import load_zero_shot_prompts
    from cf_hf.generation.verification.scoring import Verifier

    config = args.verification_config(mask_settings)
    if args.world:
        from cf_hf.world.verification import world_verifier

        return world_verifier(grid, config, args.classifier_model, show_progress=not args.quiet)
    segmenter = verification_segmenter(args, run_segmenter)
    prompts = load_zero_shot_prompts(grid, args.zero_shot_prompts_file)
    classifier = clip_attribute_classifier(grid, args.classifier_model, device=args.device, dtype=args.dtype,
                                           batch_size=args.batch_size, prompts=prompts)
    return Verifier(grid, classifier, None, segmenter, config, not args.quiet)


def build_parser():
    """The `cf-hf verify` parser: `HfArgumentParser` over `VerifyArguments`."""
    from transformers import HfArgumentParser

    return HfArgumentParser(
        VerifyArguments,
        prog="cf-hf verify",
        description="Score every counterfactual (context, attribute adherence, person, near-copies), move the "
        "failures to a `rejected` split and report the pass rates in the card. Usage: cf-hf verify RUN_OR_DATASET [options].",
    )


def _verify(args: VerifyArguments) -> int:
    source = Path(args.run_or_dataset)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such run or dataset folder.")
    if (source / "manifest.json").is_file():
        output = _verify_run(args, source)
    else:
        output = _verify_folder(args, source)
    print(f"dataset           {output}  (datasets.load_dataset({str(output)!r}))")
    return 0


def _print_reports(verifier) -> None:
    for split, report in verifier.reports.items():
        print(f"{split:<10} {report.rows} counterfactuals scored in {report.seconds:.1f} s "
              f"({report.rows_per_second:.1f}/s), {report.chunks_resumed} chunks resumed; "
              f"skipped checks: {', '.join(sorted(report.skipped)) or 'none'}")  # fmt: skip
    summary = verifier.summary
    print(f"verified          {summary.passed}/{summary.counterfactuals} counterfactuals passed; "
          f"{len(summary.small_groups)} groups left with < 2 rows")  # fmt: skip


def _verify_run(args: VerifyArguments, run_dir: Path) -> Path:
    from dataset_builder import export_dataset
    from dataset_builder.builder import finished_manifest

    manifest = finished_manifest(run_dir)
    verifier = build_verifier(args, grid_from_manifest(manifest), manifest["config"].get("mask_postprocessing"),
                              manifest.get("components", {}).get("segmenter"))
    output = Path(args.output_dir or run_dir / "dataset")
    export_dataset(run_dir, output, test_size=args.test_size, repo_id=args.repo_id, overwrite=args.overwrite, verifier=verifier)
    _print_reports(verifier)
    return output


def _split_sizes(error: Exception) -> str:
    """'train: card 99, files 6' from a datasets split-size error (its message lists SplitInfo pairs)."""
    import re

    pairs = re.findall(r"name='([^']+)'[^)]*?num_examples=(\d+)\).*?name='[^']+'[^)]*?num_examples=(\d+)", str(error))
    return "; ".join(f"{name}: card {card}, files {files}" for name, card, files in pairs) or str(error)


def _verify_folder(args: VerifyArguments, source: Path) -> Path:
    """An exported dataset folder: verified splits + card to `--output_dir`."""
    import datasets
    import yaml

    from cf_hf.concepts import load_attribute_grid
    from cf_hf.generation.verification.report import (
        VERIFICATION_PLOT,
        plot_pass_rates,
        render_verification_section,
    )
    from cf_hf.utils.output_folder import claim_output_folder
    from dataset_builder.export import CARD_NAME, DATA_DIR, ROWS_PER_PARQUET_SHARD

    output = Path(args.output_dir or f"{source.as_posix().rstrip('/')}-verified")
    if output.resolve() == source.resolve():
        raise ValueError(f"--output_dir {output} is the input folder: write the verified dataset elsewhere.")
    claim_output_folder(output, "verify", owned=(CACHE_DIR, RECORD_NAME, DATA_DIR, CARD_NAME, VERIFICATION_PLOT),
                        overwrite=args.overwrite, earlier_record=RECORD_NAME)
    try:
        splits = datasets.load_dataset(str(source))
    except datasets.exceptions.SplitsVerificationError as error:
        raise ValueError(f"{source}: the split sizes its card (README.md `dataset_info`) records disagree with its data "
                         f"files ({_split_sizes(error)}): export the dataset again, or fix the card") from None
    except (ValueError, FileNotFoundError, datasets.exceptions.DatasetsError) as error:
        raise ValueError(f"{source} is neither a generation run (no manifest.json) nor a dataset folder: {error}") from None
    if REJECTED_SPLIT in splits:
        raise ValueError(f"{source} already has a `{REJECTED_SPLIT}` split: it was verified; verify the unverified export.")
    if args.attribute_grid_file is None and args.world:
        from cf_hf.world.demo.stages import WORLD_DIR

        grid = load_attribute_grid(WORLD_DIR / "attribute_grid.yaml")
    else:
        grid = load_attribute_grid(args.attribute_grid_file)
    verifier = build_verifier(args, grid)
    verified, summary = verifier(splits, output / CACHE_DIR, where=str(source))
    files = []
    for split, dataset in verified.items():
        count = max(1, math.ceil(len(dataset) / ROWS_PER_PARQUET_SHARD))
        for index in range(count):
            path = f"{DATA_DIR}/{split}-{index:05d}-of-{count:05d}.parquet"
            (output / path).parent.mkdir(parents=True, exist_ok=True)
            dataset.shard(count, index, contiguous=True).to_parquet(str(output / path))
            files.append(path)
    header, body = _read_card(source / CARD_NAME)
    split_info = datasets.SplitDict()
    for split, dataset in verified.items():
        split_info.add(datasets.SplitInfo(name=str(split), num_examples=len(dataset)))
    header["configs"] = [{"config_name": "default",
                          "data_files": [{"split": str(split), "path": f"{DATA_DIR}/{split}-*"} for split in verified]}]  # fmt: skip
    header["dataset_info"] = datasets.DatasetInfo(features=next(iter(verified.values())).features, splits=split_info)._to_yaml_dict()
    section = "## Verification\n\n" + render_verification_section(summary) + "\n"
    body = _replace_section(body, "## Verification", section)
    card = "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True).strip() + "\n---\n" + body
    (output / CARD_NAME).write_text(card, encoding="utf-8")
    plot_pass_rates(summary, output / VERIFICATION_PLOT)
    files += [CARD_NAME, VERIFICATION_PLOT]
    (output / RECORD_NAME).write_text(json.dumps({"source": str(source), "files": files}, indent=1) + "\n", encoding="utf-8")
    _print_reports(verifier)
    return output


def _read_card(path: Path) -> tuple[dict, str]:
    """(YAML header, markdown body) of a dataset card; an empty header and a title without one."""
    import yaml

    if not path.is_file():
        return {}, "\n# Verified counterfactual dataset\n"
    text = path.read_text(encoding="utf-8")
    if text.startswith("---\n"):
        end = text.find("\n---\n", 4)
        if end > 0:
            return yaml.safe_load(text[4:end]) or {}, text[end + 5 :]
    return {}, text


def _replace_section(body: str, heading: str, section: str) -> str:
    """`body` with the markdown section under `heading` replaced by `section` (appended if absent)."""
    start = body.find(heading + "\n")
    if start < 0:
        return body.rstrip("\n") + "\n\n" + section
    end = body.find("\n## ", start + len(heading))
    return body[:start] + section + ("" if end < 0 else body[end:])


def check_verify_options(args: VerifyArguments) -> None:
    """The thresholds and sizes, checked before any model loads: a threshold outside its range would reject
    every counterfactual (and export the base images alone) or turn its check off."""
    # Fractions, probabilities and cosines live in [0, 1]; SSIM in [-1, 1].
    for option in ("max_context_difference", "min_adherence", "max_duplicate_similarity", "test_size"):
        require_in_range(option, getattr(args, option), 0.0, 1.0)
    require_in_range("min_context_ssim", args.min_context_ssim, -1.0, 1.0)
    require_positive("min_person_area_ratio", args.min_person_area_ratio, allow_zero=True)
    require_positive("max_person_area_ratio", args.max_person_area_ratio)
    if args.min_person_area_ratio > args.max_person_area_ratio:
        raise ValueError(f"--min_person_area_ratio={args.min_person_area_ratio} is above --max_person_area_ratio="
                         f"{args.max_person_area_ratio}")
    if args.test_size >= 1.0:
        raise ValueError(f"--test_size={args.test_size}: must be below 1 (the share of groups in the test split)")
    require_positive("batch_size", args.batch_size)
    require_positive("chunk_groups", args.chunk_groups)


class VerifyCommand(Command):
    """`cf-hf verify RUN_OR_DATASET`: score, reject, report."""

    name = "verify"

    def build_parser(self):
        return build_parser()

    def parse(self, argv: list[str]):
        # The run or dataset folder may come first, without its option name.
        argv = list(argv)
        if argv and not argv[0].startswith("-"):
            argv = ["--run_or_dataset", *argv]
        (args,) = super().parse(argv)
        check_verify_options(args)
        return (args,)

    def run(self, args) -> int:
        (args,) = args
        return _verify(args)
