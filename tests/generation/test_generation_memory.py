"""Memory, dtype, device and size choices of the generation stages, on tiny models of the default classes."""

from __future__ import annotations

import configparser
import gc
import json
import shutil
import weakref
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from testing_utils.generation import (
    IMAGE_SIZE,
    build_tiny_sdxl_text_to_image,
    one_torch_thread,  # noqa: F401 (a fixture, used by name below)
    tiny_cli_args,
    tiny_components,
    tiny_components_dir,
    tiny_config,
    write_tiny_grid,
)

from cf_hf.cli.generate import GenerateArguments, build_components, memory_plan
from cf_hf.concepts import load_concepts
from cf_hf.generation import generate
from cf_hf.generation.captions import LLMCaptionWriter
from cf_hf.generation.inpainting import DiffusersInpainter, native_size, shareable_components
from cf_hf.generation.interfaces import InpaintRequest
from cf_hf.generation.memory import parameter_counts, plan_memory
from cf_hf.generation.runtime import (
    MIN_DIFFUSERS_VERSION,
    check_diffusers_version,
    process_device,
    resolve_dtype,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[2]
DOCTOR = load_concepts(names=["doctor"])[0]
SDXL_SHARED = ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "vae")


@pytest.fixture(scope="module")
def tiny_root():
    return tiny_components_dir()


def _arguments(root: Path, **overrides) -> GenerateArguments:
    settings = {
        "output_dir": "unused", "caption_model": str(root / "causal_lm"),
        "text_to_image_model": str(root / "text_to_image"), "image_size": IMAGE_SIZE,
        "segmentation_model": str(root / "segformer"), "inpainting_model": str(root / "inpainting"),
        "inpainting_steps": 2, "inpainting_strength": 1.0, "inpainting_guidance": 0.0,
    }  # fmt: skip
    settings.update(overrides)
    return GenerateArguments(**settings)


def _request(image: Image.Image, seed: int = 0) -> InpaintRequest:
    mask = np.ones((image.height, image.width), np.float32)
    return InpaintRequest(image=image, mask=mask, appearance={"gender": "female"}, prompt="a woman doctor",
                          caption="A doctor works.", concept="doctor", seed=seed)  # fmt: skip


class _RecordingPipeline:
    """Forwards to a real pipeline and records the keyword arguments of each call."""

    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.calls: list[dict] = []

    def __getattr__(self, name):
        return getattr(self.pipeline, name)

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        return self.pipeline(**kwargs)


# -- the language model is released after the caption stage ----------------------------------


def test_caption_model_is_released_after_the_caption_stage(tiny_root, tmp_path):
    components = tiny_components(tiny_root, caption_writer="llm")
    writer = components["caption_writer"]
    pipeline = weakref.ref(writer.pipeline)
    model = weakref.ref(writer.pipeline.model)
    generate(tiny_config(concepts=[DOCTOR], captions_per_concept=1, decorators_per_caption=1, appearances_per_base=1),
             **components, output_dir=tmp_path / "run", show_progress=False)  # fmt: skip
    gc.collect()
    assert writer._pipeline is None
    assert pipeline() is None and model() is None


# -- text encoders, tokenizers and VAE shared between the two SDXL pipelines -----------------


def test_inpainter_shares_text_encoders_tokenizers_and_vae(tiny_root):
    components = build_components(_arguments(tiny_root, template_captions=True))
    text_to_image, inpainter = components["text_to_image"].pipeline, components["inpainter"].pipeline
    for name in SDXL_SHARED:
        assert getattr(inpainter, name) is getattr(text_to_image, name), name
    assert inpainter.unet is not text_to_image.unet
    shared_from = components["inpainter"].provenance["shared_from"]
    assert shared_from == f"{tiny_root / 'text_to_image'}: {','.join(SDXL_SHARED)}"


def test_components_whose_configs_differ_are_not_shared(tiny_root, tmp_path):
    other = shutil.copytree(tiny_root / "inpainting", tmp_path / "inpainting")
    vae_config = json.loads((other / "vae" / "config.json").read_text())
    (other / "vae" / "config.json").write_text(json.dumps({**vae_config, "scaling_factor": 0.5}))
    assert shareable_components(str(tiny_root / "text_to_image"), str(other)) == SDXL_SHARED[:-1]
    components = build_components(_arguments(tiny_root, template_captions=True, inpainting_model=str(other)))
    inpainter = components["inpainter"].pipeline
    assert inpainter.vae is not components["text_to_image"].pipeline.vae
    assert inpainter.vae.config.scaling_factor == 0.5
    assert inpainter.text_encoder is components["text_to_image"].pipeline.text_encoder


def test_no_share_components_loads_the_inpainting_checkpoints_own(tiny_root):
    components = build_components(_arguments(tiny_root, template_captions=True, share_components=False))
    assert components["inpainter"].pipeline.vae is not components["text_to_image"].pipeline.vae
    assert "shared_from" not in components["inpainter"].provenance


def test_cli_share_option_parses():
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(GenerateArguments).parse_args_into_dataclasses(
        args=["--output_dir", "run", "--no_share_components", "--variant", "fp16", "--cpu_offload"]
    )
    assert (args.share_components, args.variant, args.cpu_offload, args.dtype) == (False, "fp16", True, "auto")


# -- dtype, variant, CPU offload --------------------------------------------------------------


def test_dtype_auto_is_float16_on_cuda_and_float32_elsewhere():
    assert resolve_dtype("auto", "cuda") == "float16"
    assert resolve_dtype("auto", "cuda:1") == "float16"
    assert resolve_dtype("auto", "cpu") == "float32"
    assert resolve_dtype("auto", "mps") == "float32"
    assert resolve_dtype("bfloat16", "cuda") == "bfloat16"
    with pytest.raises(ValueError, match="unknown dtype 'half'"):
        resolve_dtype("half", "cuda")


def test_cli_default_dtype_resolves_per_device(tiny_root):
    on_cuda = build_components(_arguments(tiny_root), device="cuda:0")
    assert {on_cuda[name].dtype for name in on_cuda if name != "caption_writer"} | {on_cuda["caption_writer"].dtype} == {"float16"}
    on_cpu = build_components(_arguments(tiny_root))
    assert on_cpu["text_to_image"].dtype == on_cpu["caption_writer"].dtype == "float32"


def test_variant_fp16_loads_the_variant_files(tmp_path):
    import torch
    from diffusers import StableDiffusionXLPipeline

    folder = build_tiny_sdxl_text_to_image(tmp_path / "text_to_image")
    pipeline = StableDiffusionXLPipeline.from_pretrained(folder)
    with torch.no_grad():
        pipeline.unet.conv_in.bias.fill_(0.25)  # the variant's weights differ from the default files'
    pipeline.save_pretrained(folder, variant="fp16")
    assert (folder / "unet" / "diffusion_pytorch_model.fp16.safetensors").exists()

    default = build_components(_arguments(tmp_path, text_to_image_model=str(folder)))["text_to_image"]
    variant = build_components(_arguments(tmp_path, text_to_image_model=str(folder), variant="fp16"))["text_to_image"]
    assert not (default.pipeline.unet.conv_in.bias == 0.25).all()
    assert (variant.pipeline.unet.conv_in.bias == 0.25).all()
    assert variant.provenance["variant"] == "fp16"


def test_cpu_offload_hooks_the_pipelines(tiny_root):
    components = build_components(_arguments(tiny_root, template_captions=True, cpu_offload=True))
    for name in ("text_to_image", "inpainter"):
        assert components[name].pipeline._all_hooks, name  # enable_model_cpu_offload ran
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (90, 120, 150))
    assert components["inpainter"]([_request(image)])[0].size == image.size


# -- inpainting at the checkpoint's native size -----------------------------------------------


def test_inpainter_paints_at_the_native_size_and_returns_the_input_size(tiny_root):
    inpainter = tiny_components(tiny_root)["inpainter"]
    recorder = _RecordingPipeline(inpainter.pipeline)
    inpainter._pipeline = recorder
    native = native_size(recorder.pipeline)
    assert native == IMAGE_SIZE  # tiny UNet: sample_size 32 × VAE scale 2
    small = Image.new("RGB", (IMAGE_SIZE // 2, IMAGE_SIZE // 2), (90, 120, 150))
    painted = inpainter([_request(small)])
    assert (recorder.calls[0]["width"], recorder.calls[0]["height"]) == (native, native)
    assert painted[0].size == small.size


def test_inpainting_size_option_and_aspect_ratio(tiny_root):
    inpainter = DiffusersInpainter(str(tiny_root / "inpainting"), num_inference_steps=2, strength=1.0, size=32)
    recorder = _RecordingPipeline(inpainter.pipeline)
    inpainter._pipeline = recorder
    wide = Image.new("RGB", (128, 32), (90, 120, 150))
    assert inpainter([_request(wide)])[0].size == (128, 32)
    # The area of a 32 px square, the input's 4:1 aspect ratio: 64 x 16.
    assert (recorder.calls[0]["width"], recorder.calls[0]["height"]) == (64, 16)
    assert inpainter.provenance["size"] == "32"


def test_fast_inpainting_paints_at_the_text_to_image_size(tiny_root):
    components = build_components(_arguments(tiny_root, template_captions=True, fast_inpainting=True, image_size=48))
    assert components["inpainter"].painting_size(96, 96) == (48, 48)


# -- one GPU per process ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "local_index", "processes", "expected"),
    [
        ("cuda:0", 1, 2, "cuda:1"),
        ("cuda", 3, 4, "cuda:3"),
        ("cuda:2", 1, 2, "cuda:3"),
        ("cuda:1", 0, 1, "cuda:1"),
        ("cpu", 1, 2, "cpu"),
    ],
)
def test_cuda_device_maps_to_the_local_process(device, local_index, processes, expected):
    assert process_device(device, local_index, processes, device_count=4) == expected


def test_a_gpu_beyond_the_machine_is_refused():
    with pytest.raises(ValueError, match="means cuda:4, but this machine has 4 GPU"):
        process_device("cuda:2", 2, 3, device_count=4)


# -- caption sampling in chunks ---------------------------------------------------------------


class _CountingChatPipeline:
    def __init__(self):
        self.sizes: list[int] = []

    def __call__(self, messages, num_return_sequences, **_):
        self.sizes.append(num_return_sequences)
        start = sum(self.sizes[:-1])
        return [{"generated_text": f"A doctor reviews chart number {start + i} in a clinic."} for i in range(num_return_sequences)]


def test_captions_are_sampled_in_calls_of_at_most_the_batch_size():
    pipeline = _CountingChatPipeline()
    writer = LLMCaptionWriter(pipeline=pipeline, batch_size=2)
    captions = writer(DOCTOR, 5, seed=0)
    assert pipeline.sizes == [2, 2, 1]
    assert len(set(captions)) == 5


def test_chunked_tiny_llama_captions_are_reproducible(tiny_root):
    writer = LLMCaptionWriter(str(tiny_root / "causal_lm"), max_new_tokens=12, batch_size=2)
    assert writer(DOCTOR, 3, seed=1) == writer(DOCTOR, 3, seed=1)
    assert writer.provenance["batch_size"] == "2"


# -- the diffusers floor ----------------------------------------------------------------------


def test_setup_cfg_requires_the_diffusers_that_reads_dtype():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    requirements = [line.strip() for line in parser["options"]["install_requires"].splitlines() if line.strip()]
    assert f"diffusers>={MIN_DIFFUSERS_VERSION}" in requirements


def test_an_old_diffusers_is_refused(monkeypatch):
    import diffusers

    monkeypatch.setattr(diffusers, "__version__", "0.39.0")
    with pytest.raises(RuntimeError, match=f"diffusers>={MIN_DIFFUSERS_VERSION}"):
        check_diffusers_version()


# -- planned peak memory ----------------------------------------------------------------------


def test_parameter_counts_match_the_loaded_models(tiny_root):
    components = tiny_components(tiny_root)
    pipeline = components["text_to_image"].pipeline
    counts = parameter_counts(str(tiny_root / "text_to_image"))
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        assert counts[name] == sum(p.numel() for p in getattr(pipeline, name).parameters()), name
    components["segmenter"]._load()
    assert parameter_counts(str(tiny_root / "segformer"))["model"] == components["segmenter"]._model.num_parameters()


def test_plan_counts_shared_components_once_and_releases_the_language_model(tiny_root):
    models = {"caption_model": str(tiny_root / "causal_lm"), "text_to_image_model": str(tiny_root / "text_to_image"),
              "segmentation_model": str(tiny_root / "segformer"), "inpainting_model": str(tiny_root / "inpainting")}  # fmt: skip
    alone = plan_memory(**models, dtype="float32", release_caption_model=False)
    shared = plan_memory(**models, dtype="float32", shared=SDXL_SHARED)
    half = plan_memory(**models, dtype="float16", shared=SDXL_SHARED)
    offload = plan_memory(**models, dtype="float16", shared=SDXL_SHARED, cpu_offload=True)
    inpainting = parameter_counts(models["inpainting_model"])
    assert alone.images_bytes - shared.images_bytes == 4 * (
        sum(inpainting[name] for name in ("text_encoder", "text_encoder_2", "vae")) + parameter_counts(models["caption_model"])["model"]
    )
    assert half.peak_bytes * 2 == shared.peak_bytes
    assert offload.images_bytes < half.images_bytes
    assert "planned peak GPU memory" in half.summary()


def test_generate_prints_the_planned_peak_before_loading(tiny_root, tmp_path, capsys):
    from cf_hf.cli import main

    grid = write_tiny_grid(tmp_path / "grid.yaml")
    assert main(tiny_cli_args(tiny_root, tmp_path / "run", grid, "--template_captions", "--no_export", "--concepts", "doctor")) == 0
    out = capsys.readouterr().out
    assert out.index("planned peak GPU memory") < out.index("base images")
    assert "shared by the two diffusion pipelines: " + ", ".join(SDXL_SHARED) in out
    plan = memory_plan(_arguments(tiny_root, template_captions=True), build_components(_arguments(tiny_root, template_captions=True)))
    assert plan.summary() in out


def test_shipped_real_configs_have_the_published_sizes():
    configs = ROOT / "benchmarks" / "real_configs"
    # Model cards: Llama 3.2 3B has 3.21B parameters; the SDXL UNet 2.6B.
    assert round(parameter_counts(str(configs / "meta-llama--Llama-3.2-3B-Instruct"))["model"] / 1e9, 2) == 3.21
    turbo = parameter_counts(str(configs / "stabilityai--sdxl-turbo"))
    inpainting = parameter_counts(str(configs / "diffusers--stable-diffusion-xl-1.0-inpainting-0.1"))
    assert round(turbo["unet"] / 1e9, 1) == 2.6
    # The inpainting UNet reads 9 channels (latents, mask, masked image) instead of 4.
    assert inpainting["unet"] - turbo["unet"] == 5 * 320 * 3 * 3
    assert shareable_components(str(configs / "stabilityai--sdxl-turbo"), str(configs / "diffusers--stable-diffusion-xl-1.0-inpainting-0.1")) == (
        "text_encoder", "text_encoder_2", "vae")  # fmt: skip
