"""`cf-hf generate`: synthesise a counterfactual dataset with the default (or given) models.

```bash
cf-hf generate --output_dir outputs/run --concepts doctor nurse --captions_per_concept 8 \
    --device cuda --variant fp16          # float16 on CUDA by default (--dtype auto)
accelerate launch --num_processes 4 -m cf_hf.cli generate ...   # shards split across GPUs
```
Prints the planned peak GPU memory before loading (`cf_hf.generation.memory`), then a summary
(generated, skipped by reason, time per stage), and exports the finished run as a dataset folder
(parquet + card) that `datasets.load_dataset` reads.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Literal

from cf_hf.cli.command import QUIET_HELP, Command
from cf_hf.cli.validation import require_in_range, require_positive
from cf_hf.generation.base_images import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_TEXT_TO_IMAGE_GUIDANCE,
    DEFAULT_TEXT_TO_IMAGE_MODEL,
    DEFAULT_TEXT_TO_IMAGE_STEPS,
)
from cf_hf.generation.captions import DEFAULT_CAPTION_BATCH_SIZE, DEFAULT_CAPTION_MODEL
from cf_hf.generation.inpainting import (
    DEFAULT_INPAINTING_GUIDANCE,
    DEFAULT_INPAINTING_MODEL,
    DEFAULT_INPAINTING_STEPS,
    DEFAULT_INPAINTING_STRENGTH,
    FAST_INPAINTING_GUIDANCE,
    FAST_INPAINTING_STEPS,
    FAST_INPAINTING_STRENGTH,
)
from cf_hf.generation.masks import APPEARANCE_LABELS, DEFAULT_SEGMENTATION_MODEL, MaskPostprocessing

_MASK_DEFAULTS = MaskPostprocessing()


def _names(values: list[str], option: str) -> list[str]:
    """A list option's values; a comma inside one is the other convention, explained."""
    for value in values:
        if "," in value:
            raise ValueError(
                f"--{option} takes space-separated values (--{option} {' '.join(value.split(','))}), got {value!r}"
            )
    return list(values)


@dataclass
class GenerateArguments:
    """The `cf-hf generate` options. List options take space-separated values (`--concepts doctor nurse`)."""

    output_dir: str = field(metadata={"help": "Run folder: captions, shards and manifest go here."})
    resume: bool = field(default=False, metadata={"help": "Continue the run already in output_dir."})
    # What to generate
    concepts_file: str | None = field(default=None, metadata={"help": "Concepts YAML/JSON; unset: the shipped professions."})
    concepts: list[str] = field(default_factory=list, metadata={"help": "Subset of concept names, space-separated; empty: all."})
    captions_per_concept: int = field(default=4, metadata={"help": "Neutral captions per concept."})
    decorators_per_caption: int = field(default=2, metadata={"help": "Base images per caption, each with its own decorator draw."})
    appearances_per_base: int | None = field(default=None, metadata={"help": "Grid cells painted per base image; unset: the whole grid."})
    decorators_file: str | None = field(default=None, metadata={"help": "Decorators YAML/JSON; unset: the shipped ones."})
    attribute_grid_file: str | None = field(default=None, metadata={"help": "Attribute grid YAML/JSON; unset: gender x FairFace race x age."})
    optional_attributes: list[str] = field(default_factory=list, metadata={"help": "Optional grid attributes to add (body_type, skin_tone), space-separated."})
    appearance_words_file: str | None = field(default=None, metadata={"help": "Caption validator word list; unset: the shipped one."})
    seed: int = field(default=0, metadata={"help": "Run seed; every sample's seed derives from it."})
    shard_size: int = field(default=8, metadata={"help": "Base images per shard (the unit of resumption)."})
    # Models
    template_captions: bool = field(default=False, metadata={"help": "Captions from templates only (offline, no language model)."})
    caption_model: str = field(default=DEFAULT_CAPTION_MODEL, metadata={"help": "Chat model for captions."})
    caption_batch_size: int = field(default=DEFAULT_CAPTION_BATCH_SIZE, metadata={"help": "Captions sampled per language-model call (memory grows with it; the captions depend on it)."})
    text_to_image_model: str = field(default=DEFAULT_TEXT_TO_IMAGE_MODEL, metadata={"help": "AutoPipelineForText2Image model id or folder."})
    text_to_image_steps: int = field(default=DEFAULT_TEXT_TO_IMAGE_STEPS, metadata={"help": "Denoising steps of the base images."})
    text_to_image_guidance: float = field(default=DEFAULT_TEXT_TO_IMAGE_GUIDANCE, metadata={"help": "Guidance scale of the base images."})
    image_size: int = field(default=DEFAULT_IMAGE_SIZE, metadata={"help": "Height and width of the images, in pixels."})
    segmentation_model: str = field(default=DEFAULT_SEGMENTATION_MODEL, metadata={"help": "SegFormer (human parsing) model id or folder."})
    mask_labels: list[str] = field(default_factory=lambda: list(APPEARANCE_LABELS), metadata={"help": "Label names forming the mask (plural = left+right), space-separated."})
    include_clothing: bool = field(default=False, metadata={"help": "Repaint clothing too (otherwise attire stays)."})
    min_mask_area: float = field(default=_MASK_DEFAULTS.min_area, metadata={"help": "Smallest mask, as a share of the image; a smaller one skips the base image."})
    max_mask_area: float = field(default=_MASK_DEFAULTS.max_area, metadata={"help": "Largest mask, as a share of the image; a larger one skips the base image."})
    mask_dilation: float = field(default=_MASK_DEFAULTS.dilation, metadata={"help": "Mask dilation, as a share of the image size."})
    mask_feather: float = field(default=_MASK_DEFAULTS.feather, metadata={"help": "Mask edge blur, as a share of the image size."})
    inpainting_model: str = field(default=DEFAULT_INPAINTING_MODEL, metadata={"help": "AutoPipelineForInpainting model id or folder."})
    fast_inpainting: bool = field(default=False, metadata={"help": "Inpaint with the text-to-image weights (from_pipe), few steps."})
    inpainting_steps: int | None = field(default=None, metadata={"help": f"Inpainting denoising steps; unset: {DEFAULT_INPAINTING_STEPS} ({FAST_INPAINTING_STEPS} with --fast_inpainting)."})
    inpainting_strength: float | None = field(default=None, metadata={"help": f"Inpainting strength; unset: {DEFAULT_INPAINTING_STRENGTH} ({FAST_INPAINTING_STRENGTH} with --fast_inpainting)."})
    inpainting_guidance: float | None = field(default=None, metadata={"help": f"Inpainting guidance scale; unset: {DEFAULT_INPAINTING_GUIDANCE} ({FAST_INPAINTING_GUIDANCE} with --fast_inpainting)."})
    inpainting_size: int | None = field(default=None, metadata={"help": "Side in px the inpainting model paints at; unset: its native size (1024 for SDXL; with --fast_inpainting the image size). Images are resized to it and back."})
    share_components: bool = field(default=True, metadata={"help": "Reuse the text-to-image pipeline's text encoders, tokenizers and VAE for inpainting where the two checkpoints' configs match (--no_share_components loads the inpainting checkpoint's own)."})
    # Hardware
    device: str = field(default="cpu", metadata={"help": "cpu, cuda, cuda:1, mps. Under accelerate launch, cuda:N means GPU N + the process's local index (cuda = cuda:0)."})
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = field(default="auto", metadata={"help": "auto: float16 on CUDA, float32 elsewhere."})
    variant: str | None = field(default=None, metadata={"help": "Weight variant of the diffusion checkpoints, e.g. fp16 (half the download); unset: the full-precision files."})
    cpu_offload: bool = field(default=False, metadata={"help": "Keep the diffusion models in CPU memory and move one at a time to the GPU (small cards; slower)."})
    text_to_image_batch_size: int = field(default=4, metadata={"help": "Base images per text-to-image call."})
    segmentation_batch_size: int = field(default=8, metadata={"help": "Images per segmentation call."})
    inpainting_batch_size: int = field(default=4, metadata={"help": "Counterfactuals per inpainting call."})
    # Dataset export
    export_dir: str | None = field(default=None, metadata={"help": "Dataset folder; unset: <output_dir>/dataset."})
    no_export: bool = field(default=False, metadata={"help": "Do not export the finished run as a dataset folder."})
    overwrite: bool = field(default=False, metadata={"help": "Export into a non-empty folder; replaces only files an earlier cf_hf export wrote."})
    test_size: float = field(default=0.1, metadata={"help": "Share of groups in the test split."})
    repo_id: str = field(default="org/they-are-all-doctors", metadata={"help": "Hub id written in the card's example."})
    quiet: bool = field(default=False, metadata={"aliases": ["--no_progress"], "help": QUIET_HELP})
    verify: bool = field(default=False, metadata={"help": "Score every counterfactual before export (cf-hf verify's checks and thresholds): failures go to a `rejected` split, pass rates to the card."})
    verify_classifier_model: str = field(default="openai/clip-vit-base-patch32", metadata={"help": "With --verify: the CLIP checkpoint of the zero-shot attribute classifier."})


def build_config(args: GenerateArguments):
    """The `GenerationConfig` the arguments describe."""
    from cf_hf.concepts import load_attribute_grid, load_concepts, load_decorators
    from cf_hf.generation.orchestration.config import GenerationConfig

    return GenerationConfig(
        concepts=load_concepts(args.concepts_file, _names(args.concepts, "concepts") or None),
        attribute_grid=load_attribute_grid(args.attribute_grid_file, _names(args.optional_attributes, "optional_attributes")),
        decorators=load_decorators(args.decorators_file),
        captions_per_concept=args.captions_per_concept,
        decorators_per_caption=args.decorators_per_caption,
        appearances_per_base=args.appearances_per_base,
        seed=args.seed,
        shard_size=args.shard_size,
        mask_postprocessing=MaskPostprocessing(
            dilation=args.mask_dilation, feather=args.mask_feather, min_area=args.min_mask_area, max_area=args.max_mask_area
        ),
        text_to_image_batch_size=args.text_to_image_batch_size,
        segmentation_batch_size=args.segmentation_batch_size,
        inpainting_batch_size=args.inpainting_batch_size,
    )


def build_components(args: GenerateArguments, device: str | None = None) -> dict:
    """The four components the arguments describe (none loads a model until it is called)."""
    from cf_hf.concepts import load_appearance_words
    from cf_hf.generation.base_images import DiffusersTextToImage
    from cf_hf.generation.captions import CaptionValidator, LLMCaptionWriter, TemplateCaptionWriter
    from cf_hf.generation.inpainting import DiffusersInpainter
    from cf_hf.generation.masks import SegformerSegmenter
    from cf_hf.generation.runtime import resolve_dtype

    device = device or args.device
    dtype = resolve_dtype(args.dtype, device)
    if args.template_captions:
        caption_writer = TemplateCaptionWriter()
    else:
        caption_writer = LLMCaptionWriter(
            args.caption_model,
            device=device,
            dtype=dtype,
            batch_size=args.caption_batch_size,
            validator=CaptionValidator(load_appearance_words(args.appearance_words_file)),
        )
    text_to_image = DiffusersTextToImage(
        args.text_to_image_model,
        num_inference_steps=args.text_to_image_steps,
        guidance_scale=args.text_to_image_guidance,
        height=args.image_size,
        width=args.image_size,
        variant=args.variant,
        device=device,
        dtype=dtype,
        cpu_offload=args.cpu_offload,
    )
    segmenter = SegformerSegmenter(
        args.segmentation_model, labels=_names(args.mask_labels, "mask_labels"), include_clothing=args.include_clothing,
        device=device, dtype=dtype,
    )  # fmt: skip
    fast = args.fast_inpainting
    settings = {
        "num_inference_steps": args.inpainting_steps or (FAST_INPAINTING_STEPS if fast else DEFAULT_INPAINTING_STEPS),
        "strength": args.inpainting_strength or (FAST_INPAINTING_STRENGTH if fast else DEFAULT_INPAINTING_STRENGTH),
        "guidance_scale": args.inpainting_guidance
        if args.inpainting_guidance is not None
        else (FAST_INPAINTING_GUIDANCE if fast else DEFAULT_INPAINTING_GUIDANCE),
    }
    if fast:
        inpainter = DiffusersInpainter.from_text_to_image(text_to_image, size=args.inpainting_size, **settings)
    else:
        inpainter = DiffusersInpainter(
            args.inpainting_model, variant=args.variant, device=device, dtype=dtype, size=args.inpainting_size,
            cpu_offload=args.cpu_offload, share_with=text_to_image if args.share_components else None, **settings,
        )  # fmt: skip
    return {"caption_writer": caption_writer, "text_to_image": text_to_image, "segmenter": segmenter, "inpainter": inpainter}


def memory_plan(args: GenerateArguments, components: dict):
    """The planned peak GPU memory of a run with these arguments and components (their sharing)."""
    from cf_hf.generation.memory import plan_memory

    inpainter = components["inpainter"]
    return plan_memory(
        caption_model=None if args.template_captions else args.caption_model,
        text_to_image_model=args.text_to_image_model,
        segmentation_model=args.segmentation_model,
        inpainting_model=None if args.fast_inpainting else args.inpainting_model,
        dtype=components["text_to_image"].dtype,
        shared=inpainter.shared_components,
        cpu_offload=args.cpu_offload,
    )


def build_parser():
    """The `cf-hf generate` parser: `HfArgumentParser` over `GenerateArguments`."""
    from transformers import HfArgumentParser

    return HfArgumentParser(
        GenerateArguments,
        prog="cf-hf generate",
        description="Synthesise a counterfactual dataset. List options take space-separated values.",
    )


def _generate(args: GenerateArguments) -> int:
    from pathlib import Path

    from cf_hf.generation.orchestration import ProcessFailedError, distributed_state, generate
    from cf_hf.generation.run_folder import MANIFEST_NAME, RUN_FOLDER_ENTRIES
    from cf_hf.generation.runtime import cuda_device_count, process_device
    from cf_hf.utils.model_loading import ModelLoadError
    from cf_hf.utils.output_folder import claim_output_folder

    state = distributed_state()
    start = time.perf_counter()
    if state.is_main_process:
        # The run's own manifest says which run it is (`generate` refuses another or, without --resume,
        # the same); the marker says that the folder is cf-hf generate's, before any model loads.
        owned = RUN_FOLDER_ENTRIES
        if args.export_dir and Path(args.export_dir).resolve().parent == Path(args.output_dir).resolve():
            owned += (Path(args.export_dir).name,)  # an export folder of another name inside the run
        claim_output_folder(args.output_dir, "generate", owned=owned, earlier_record=MANIFEST_NAME)
    try:
        device = process_device(args.device, state.local_process_index, state.num_processes, cuda_device_count())
        config = build_config(args)
        components = build_components(args, device)
        if state.is_main_process:
            try:
                print(memory_plan(args, components).summary())
            except (OSError, ValueError) as error:  # a config that cannot be read now fails at load time
                print(f"planned peak GPU memory: unknown ({error})")
        report = generate(
            config,
            **components,
            output_dir=args.output_dir,
            resume=args.resume,
            show_progress=not args.quiet,
            distributed=state,
        )
    except ModelLoadError as error:
        raise ModelLoadError(error.model_id, f"{error}{_model_flag_hint(args, error.model_id)}") from None
    except ProcessFailedError as error:
        # Another process's error: its message says what to change.
        raise ValueError(str(error)) from None
    if not state.is_main_process:
        return 0
    print(report.summary())
    rejections = getattr(components["caption_writer"], "rejections", None)
    if rejections:
        print("captions rejected: " + ", ".join(f"{reason}: {n}" for reason, n in rejections.most_common()))
    print(f"total time        {time.perf_counter() - start:.1f} s")
    if report.complete and not args.no_export:
        from dataset_builder import ExportFolderError, export_dataset

        export_dir = Path(args.export_dir or Path(args.output_dir) / "dataset")
        try:
            export_dataset(args.output_dir, export_dir, test_size=args.test_size, repo_id=args.repo_id, overwrite=args.overwrite,
                           verifier=_verifier(args) if args.verify else None)  # fmt: skip
        except ExportFolderError as error:
            raise ExportFolderError(f"{error} The run itself is finished: rerun with --resume to export it.") from None
        print(f"dataset           {export_dir}  (datasets.load_dataset({str(export_dir)!r}))")
    return 0 if report.complete else 1


def _model_flag_hint(args: GenerateArguments, model_id: str) -> str:
    """" (set with --text_to_image_model)" for the option that named `model_id`, else ""."""
    flags = {args.inpainting_model: "--inpainting_model", args.segmentation_model: "--segmentation_model",
             args.caption_model: "--caption_model", args.text_to_image_model: "--text_to_image_model"}  # fmt: skip
    return f" (set with {flags[model_id]})" if model_id in flags else ""


def _verifier(args: GenerateArguments):
    """The `Verifier` of `--verify`: the run's segmenter model and device, the default thresholds."""
    from cf_hf.cli.verify import VerifyArguments, build_verifier, grid_from_manifest
    from dataset_builder.builder import finished_manifest

    manifest = finished_manifest(args.output_dir)
    dtype = args.dtype if args.dtype != "auto" else ("float16" if args.device.startswith("cuda") else "float32")
    options = VerifyArguments(run_or_dataset=args.output_dir, classifier_model=args.verify_classifier_model,
                              segmentation_model=args.segmentation_model, device=args.device, dtype=dtype,
                              quiet=args.quiet)  # fmt: skip
    # The run's own segmenter record: the verifier's person mask is the one the generation repainted
    # (--mask_labels, --include_clothing), so repainted clothes never count as changed context.
    return build_verifier(options, grid_from_manifest(manifest), manifest["config"].get("mask_postprocessing"),
                          manifest.get("components", {}).get("segmenter"))


# Options that count something: each must be at least 1 when set (0 would fall back to a default unseen).
_COUNT_OPTIONS = ("captions_per_concept", "decorators_per_caption", "appearances_per_base", "shard_size",
                  "caption_batch_size", "text_to_image_steps", "image_size", "inpainting_steps", "inpainting_size",
                  "text_to_image_batch_size", "segmentation_batch_size", "inpainting_batch_size")


def check_generate_options(args: GenerateArguments) -> None:
    """Every count, share and scale in its range, before any work (a bad `--test_size` used to fail only
    after the whole generation)."""
    for option in _COUNT_OPTIONS:
        require_positive(option, getattr(args, option, None))
    for option in ("min_mask_area", "max_mask_area", "mask_dilation", "mask_feather", "inpainting_strength"):
        require_in_range(option, getattr(args, option, None), 0.0, 1.0)
    if args.inpainting_strength is not None and args.inpainting_strength == 0:
        raise ValueError("--inpainting_strength=0: must be > 0 (0 paints nothing)")
    if args.min_mask_area > args.max_mask_area:
        raise ValueError(f"--min_mask_area={args.min_mask_area} is above --max_mask_area={args.max_mask_area}")
    for option in ("text_to_image_guidance", "inpainting_guidance"):
        require_positive(option, getattr(args, option, None), allow_zero=True)
    require_in_range("test_size", args.test_size, 0.0, 1.0)
    if args.test_size >= 1.0:
        raise ValueError(f"--test_size={args.test_size}: must be below 1 (the share of groups in the test split)")


class GenerateCommand(Command):
    """`cf-hf generate`: generate (or resume) a run, print its summary, export the dataset."""

    name = "generate"
    uses_diffusers = True

    def build_parser(self):
        return build_parser()

    def parse(self, argv: list[str]):
        """The options, checked before any model loads or image is generated."""
        (args,) = super().parse(argv)
        check_generate_options(args)
        return (args,)

    def run(self, args) -> int:
        (args,) = args
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        return _generate(args)
