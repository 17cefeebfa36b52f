"""GPU memory of `cf-hf generate`: the planned peak per configuration, and on CUDA the measured one.

    python benchmarks/generation_memory.py                 # planned peaks of the default models (any machine)
    python benchmarks/generation_memory.py --measure       # + measured on CUDA, randomly initialised real shapes
    python benchmarks/generation_memory.py --configs DIR   # other models: DIR holds one folder per model

The planned peak is `cf_hf.generation.memory.plan_memory`, the function `cf-hf generate` prints
before it loads anything: weights from parameter counts, each model built on the meta device from
its config. `benchmarks/real_configs/` holds the configs of the default models (no weights), so
the plan needs neither the Hub nor a GPU. With `--measure` (CUDA), each configuration builds the
same models with random weights on the GPU, runs the stages as `generate` does (captions, then
base images, masks and counterfactuals) through the project's components, and reports
`torch.cuda.max_memory_allocated` and images/s. Random weights make the images noise; memory
and speed are those of the real shapes.
"""

from __future__ import annotations

import argparse
import functools
import gc
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

REAL_CONFIGS = Path(__file__).resolve().parent / "real_configs"
CARDS_GIB = (16, 24, 40, 80)
GIB = 2**30
# Folder names in --configs: the Hub id with "/" written "--".
DEFAULT_FOLDERS = {
    "caption": "meta-llama--Llama-3.2-3B-Instruct",
    "text_to_image": "stabilityai--sdxl-turbo",
    "segmentation": "mattmdjaga--segformer_b2_clothes",
    "inpainting": "diffusers--stable-diffusion-xl-1.0-inpainting-0.1",
}


@dataclass(frozen=True)
class Setting:
    """One way to run the pipeline: what the plan and the measurement vary."""

    label: str
    dtype: str
    release_caption_model: bool
    share: bool
    cpu_offload: bool = False
    fast_inpainting: bool = False


SETTINGS = (
    Setting("float32, all resident (the old CLI default)", "float32", release_caption_model=False, share=False),
    Setting("float16, all resident", "float16", release_caption_model=False, share=False),
    Setting("float16, LM released", "float16", release_caption_model=True, share=False),
    Setting("float16, LM released, shared (default)", "float16", release_caption_model=True, share=True),
    Setting("float16, LM released, shared, CPU offload", "float16", release_caption_model=True, share=True, cpu_offload=True),
    Setting("float16, LM released, --fast_inpainting", "float16", release_caption_model=True, share=True, fast_inpainting=True),
)


def _models(root: Path) -> dict[str, str]:
    return {role: str(root / folder) for role, folder in DEFAULT_FOLDERS.items()}


def plan(setting: Setting, models: dict[str, str]):
    from cf_hf.generation.inpainting import shareable_components
    from cf_hf.generation.memory import plan_memory

    shared = shareable_components(models["text_to_image"], models["inpainting"]) if setting.share else ()
    return plan_memory(
        caption_model=models["caption"],
        text_to_image_model=models["text_to_image"],
        segmentation_model=models["segmentation"],
        inpainting_model=None if setting.fast_inpainting else models["inpainting"],
        dtype=setting.dtype,
        shared=shared,
        cpu_offload=setting.cpu_offload,
        release_caption_model=setting.release_caption_model,
    )


# -- randomly initialised models of the real shapes -------------------------------------------


def _random_model(model_class, config, device: str, dtype):
    """A model of `config`'s shape with its own random initialisation, created directly on
    `device` in `dtype` (no float32 copy on the way: the peak counts what a run holds)."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = model_class._from_config(config) if hasattr(model_class, "_from_config") else model_class.from_config(config)
    finally:
        torch.set_default_dtype(previous)
    return model.to(dtype).eval()  # the few tensors created in float32 regardless


@functools.cache
def _clip_tokenizer():
    """A small CLIP tokenizer: the text encoders' speed and memory do not depend on the vocabulary."""
    from cf_hf.utils.tiny_clip import train_clip_tokenizer

    return train_clip_tokenizer(["a photo of a doctor working in a hospital clinic at night"], vocab_size=300)


def build_pipeline(folder: str, device: str, dtype, shared: dict | None = None):
    """The diffusers pipeline described by `folder`'s configs, random weights, tiny tokenizers."""
    import diffusers
    import transformers

    index = diffusers.DiffusionPipeline.load_config(folder)
    pipeline_class = getattr(diffusers, index["_class_name"])
    components = dict(shared or {})
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list) or None in entry or name in components:
            continue  # metadata, an absent optional component, or one given
        library, class_name = entry
        if "Tokenizer" in class_name:
            components[name] = _clip_tokenizer()
        elif library == "diffusers" and name == "scheduler":
            components[name] = getattr(diffusers, class_name).from_config(getattr(diffusers, class_name).load_config(folder, subfolder=name))
        elif library == "diffusers":
            model_class = getattr(diffusers, class_name)
            components[name] = _random_model(model_class, model_class.load_config(folder, subfolder=name), device, dtype)
        else:
            config = transformers.AutoConfig.from_pretrained(folder, subfolder=name)
            components[name] = _random_model(getattr(transformers, class_name), config, device, dtype)
    extra = {key: value for key, value in index.items() if not key.startswith("_") and not isinstance(value, list)}
    pipeline = pipeline_class(**components, **{k: v for k, v in extra.items() if k in _init_arguments(pipeline_class)})
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _init_arguments(pipeline_class) -> set[str]:
    import inspect

    return set(inspect.signature(pipeline_class.__init__).parameters)


def build_transformers_model(folder: str, device: str, dtype):
    import transformers

    config = transformers.AutoConfig.from_pretrained(folder)
    return _random_model(getattr(transformers, config.architectures[0]), config, device, dtype)


def measure(setting: Setting, models: dict[str, str], args) -> dict[str, float]:
    """Peak allocated bytes and images/s of one setting, through the project's components."""
    import torch
    from _generation_tiny import build_tiny_causal_lm
    from transformers import AutoTokenizer, SegformerImageProcessor
    from transformers import pipeline as text_generation

    from cf_hf.concepts import load_concepts
    from cf_hf.generation.base_images import DiffusersTextToImage, place_pipeline
    from cf_hf.generation.captions import LLMCaptionWriter
    from cf_hf.generation.inpainting import DiffusersInpainter, shareable_components
    from cf_hf.generation.interfaces import ImageRequest, InpaintRequest
    from cf_hf.generation.masks import SegformerSegmenter

    device, dtype = args.device, getattr(torch, setting.dtype)
    cuda = device.startswith("cuda")
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    result = {}
    concept = load_concepts(names=["doctor"])[0]

    # Captions: the language model, then (when released) nothing of it stays.
    tokenizer_folder = build_tiny_causal_lm(Path(args.scratch) / "lm_tokenizer")
    language_model = build_transformers_model(models["caption"], device, dtype)
    chat = text_generation("text-generation", model=language_model, tokenizer=AutoTokenizer.from_pretrained(tokenizer_folder), device=device)
    writer = LLMCaptionWriter(pipeline=chat, max_new_tokens=args.caption_tokens, batch_size=args.caption_batch_size, max_attempts=1)
    del language_model, chat
    start = time.perf_counter()
    writer(concept, args.captions, seed=0)
    result["captions/s"] = args.captions / (time.perf_counter() - start)
    if setting.release_caption_model:
        writer.release()

    # Images: base images, masks, counterfactuals (as generate() calls them).
    text_to_image_pipeline = place_pipeline(build_pipeline(models["text_to_image"], device if not setting.cpu_offload else "cpu", dtype), device, setting.cpu_offload)
    text_to_image = DiffusersTextToImage(pipeline=text_to_image_pipeline, height=args.image_size, width=args.image_size,
                                         num_inference_steps=1, guidance_scale=0.0, device=device, dtype=setting.dtype)  # fmt: skip
    segmenter = SegformerSegmenter(
        model=build_transformers_model(models["segmentation"], device, dtype), device=device, dtype=setting.dtype,
        image_processor=SegformerImageProcessor(size={"height": 512, "width": 512}),
    )  # fmt: skip
    if setting.fast_inpainting:
        inpainter = DiffusersInpainter.from_text_to_image(text_to_image, num_inference_steps=args.inpainting_steps)
    else:
        shared_names = shareable_components(models["text_to_image"], models["inpainting"]) if setting.share else ()
        shared = {name: getattr(text_to_image_pipeline, name) for name in shared_names}
        built = build_pipeline(models["inpainting"], device if not setting.cpu_offload else "cpu", dtype, shared)
        inpainter = DiffusersInpainter(pipeline=place_pipeline(built, device, setting.cpu_offload),
                                       num_inference_steps=args.inpainting_steps, strength=1.0, device=device)  # fmt: skip
    requests = [ImageRequest("doctor", "A doctor works.", f"A doctor works in a clinic, scene {i}", seed=i) for i in range(args.batch_size)]
    text_to_image(requests[:1])  # warm-up
    start = time.perf_counter()
    images = text_to_image(requests)
    if cuda:
        torch.cuda.synchronize(device)
    result["base images/s"] = len(images) / (time.perf_counter() - start)
    segmenter(images)
    import numpy as np

    mask = np.zeros((args.image_size, args.image_size), np.float32)
    mask[args.image_size // 4 : 3 * args.image_size // 4, args.image_size // 4 : 3 * args.image_size // 4] = 1.0
    paint = [InpaintRequest(image, mask, {"gender": "female"}, "a woman doctor", "A doctor works.", "doctor", seed)
             for seed, image in enumerate(images)]  # fmt: skip
    inpainter(paint[:1])  # warm-up
    start = time.perf_counter()
    inpainter(paint)
    if cuda:
        torch.cuda.synchronize(device)
    result["counterfactuals/s"] = len(paint) / (time.perf_counter() - start)
    result["painting size"] = inpainter.painting_size(args.image_size, args.image_size)[0]
    result["peak"] = torch.cuda.max_memory_allocated(device) if cuda else float("nan")
    del writer, text_to_image, text_to_image_pipeline, segmenter, inpainter
    gc.collect()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", type=Path, default=REAL_CONFIGS, help="one folder per model, named as in real_configs/")
    parser.add_argument("--measure", action="store_true", help="also build and run every setting (CUDA for memory)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--image_size", type=int, default=512)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--inpainting_steps", type=int, default=4, help="fewer than the default 20: memory does not grow with steps")
    parser.add_argument("--captions", type=int, default=8)
    parser.add_argument("--caption_batch_size", type=int, default=8)
    parser.add_argument("--caption_tokens", type=int, default=32)
    parser.add_argument("--settings", default=None, help="comma-separated row numbers to measure (default: all)")
    args = parser.parse_args(argv)
    models = _models(args.configs)

    print(f"planned peak GPU memory from parameter counts ({args.configs.name}); GB = 10^9 bytes, weights only\n")
    header = f"{'#':<3}{'setting':<44}{'captions':>9}{'images':>9}{'peak':>9}" + "".join(f"{f'{c} GiB':>9}" for c in CARDS_GIB)
    print(header)
    plans = []
    for number, setting in enumerate(SETTINGS, 1):
        planned = plan(setting, models)
        plans.append(planned)
        free = "".join(f"{(card * GIB - planned.peak_bytes) / 1e9:>+9.1f}" for card in CARDS_GIB)
        print(f"{number:<3}{setting.label:<44}{planned.captions_bytes / 1e9:>9.2f}{planned.images_bytes / 1e9:>9.2f}"
              f"{planned.peak_bytes / 1e9:>9.2f}{free}")  # fmt: skip
    print("(card columns: GB left for activations after the planned peak; negative: does not fit)")
    print("\n" + plans[3].summary())

    if args.measure:
        import tempfile

        import torch

        if args.device.startswith("cuda") and not torch.cuda.is_available():
            print("\n--measure needs CUDA for memory (pass --device cpu to time the code path only).")
            return 2
        chosen = [int(n) for n in args.settings.split(",")] if args.settings else range(2, len(SETTINGS) + 1)
        print(f"\nmeasured on {torch.cuda.get_device_name(args.device) if args.device.startswith('cuda') else args.device}: "
              f"{args.batch_size} base images at {args.image_size} px, {args.batch_size} counterfactuals, "
              f"{args.captions} captions of {args.caption_tokens} tokens")  # fmt: skip
        print(f"{'#':<3}{'setting':<44}{'planned':>9}{'measured':>10}{'captions/s':>11}{'bases/s':>9}{'cf/s':>7}{'cf px':>7}")
        with tempfile.TemporaryDirectory() as scratch:
            args.scratch = scratch
            for number in chosen:
                setting = SETTINGS[number - 1]
                result = measure(setting, models, args)
                print(f"{number:<3}{setting.label:<44}{plans[number - 1].peak_bytes / 1e9:>9.2f}{result['peak'] / 1e9:>10.2f}"
                      f"{result['captions/s']:>11.2f}{result['base images/s']:>9.2f}{result['counterfactuals/s']:>7.2f}"
                      f"{result['painting size']:>7}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
