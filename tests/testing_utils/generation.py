"""Tiny, randomly initialised generation components of the same classes the defaults load.

Each builder saves to a folder with `save_pretrained`; the tests load them back through the real
code paths (`AutoPipelineForText2Image.from_pretrained`, `SegformerForSemanticSegmentation
.from_pretrained`, the `transformers` text-generation pipeline). `tiny_components_dir()` builds all
of them once per process, so every test module shares one build.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import pytest

IMAGE_SIZE = 64

# The label set of the default human-parsing checkpoint (ATR), by id.
ATR_LABELS = [
    "Background", "Hat", "Hair", "Sunglasses", "Upper-clothes", "Skirt", "Pants", "Dress", "Belt",
    "Left-shoe", "Right-shoe", "Face", "Left-leg", "Right-leg", "Left-arm", "Right-arm", "Bag", "Scarf",
]  # fmt: skip

_CORPUS = [
    "a photo of a doctor in a hospital corridor, soft light, wide shot",
    "a photo of a young Black woman working as a nurse in a clinic",
    "an elderly East Asian man working as a chef in a kitchen, studio photo",
    "a middle-aged Indian woman working as an engineer at night, close-up",
]


@functools.cache
def _tokenizer():
    # Trained once: BPE training breaks ties in no fixed order, and the text-to-image and the
    # inpainting pipelines must hold the same tokenizer (as the real SDXL checkpoints do).
    from cf_hf.utils.tiny_clip import train_clip_tokenizer

    return train_clip_tokenizer(_CORPUS, vocab_size=300)


def _text_encoders(tokenizer):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=32,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        hidden_act="gelu",
    )
    torch.manual_seed(0)
    return CLIPTextModel(config), CLIPTextModelWithProjection(config)


def _sdxl_components(in_channels: int) -> dict:
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=IMAGE_SIZE // 2,
        in_channels=in_channels,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        # 6 micro-conditioning values x 8 + the pooled text projection (32).
        projection_class_embeddings_input_dim=6 * 8 + 32,
        cross_attention_dim=64,
        norm_num_groups=16,
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=[16, 32],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=IMAGE_SIZE,
        # No fp32 upcast for a float32 toy VAE (it only makes diffusers warn on every call).
        force_upcast=False,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="trailing"
    )
    tokenizer = _tokenizer()
    text_encoder, text_encoder_2 = _text_encoders(tokenizer)
    return {
        "unet": unet,
        "vae": vae,
        "scheduler": scheduler,
        "text_encoder": text_encoder,
        "text_encoder_2": text_encoder_2,
        "tokenizer": tokenizer,
        "tokenizer_2": tokenizer,
    }


def build_tiny_sdxl_text_to_image(path: Path) -> Path:
    from diffusers import StableDiffusionXLPipeline

    StableDiffusionXLPipeline(**_sdxl_components(in_channels=4)).save_pretrained(path)
    return path


def build_tiny_sdxl_inpainting(path: Path) -> Path:
    from diffusers import StableDiffusionXLInpaintPipeline

    # 9 input channels: noisy latents, mask, masked-image latents (the SDXL inpainting checkpoint).
    StableDiffusionXLInpaintPipeline(
        **_sdxl_components(in_channels=9), requires_aesthetics_score=False
    ).save_pretrained(path)
    return path


def build_tiny_segformer(path: Path, labels: list[str] | None = None) -> Path:
    """A 2-block `SegformerForSemanticSegmentation` with an ATR-like `id2label` (random weights:
    the person labels cover a few percent of a 64 px image, varying per image)."""
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    labels = labels or ATR_LABELS
    config = SegformerConfig(
        num_channels=3,
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[4, 2],
        hidden_sizes=[8, 16],
        patch_sizes=[7, 3],
        strides=[4, 2],
        num_attention_heads=[1, 1],
        mlp_ratios=[2, 2],
        decoder_hidden_size=16,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: index for index, name in enumerate(labels)},
    )
    torch.manual_seed(0)
    model = SegformerForSemanticSegmentation(config)
    model.save_pretrained(path)
    SegformerImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(path)
    return path


CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tiny_causal_lm(path: Path) -> Path:
    """A 1-layer `LlamaForCausalLM` with a word-level tokenizer and a chat template (outputs garbage)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = sorted({word for text in _CORPUS for word in text.replace(",", " ").split()})
    specials = ["<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
    vocab = {token: index for index, token in enumerate(specials + words)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module", autouse=False)
def one_torch_thread():
    """Run a module's tests on one torch thread, then restore the previous count.

    The tiny models' ops take microseconds: with two threads on a busy 2-core machine, OpenMP's
    spin-waiting made the same run 20-40 times slower (2 s vs 50 s measured); one thread is
    never slower for them. Restored afterwards because the setting is process-wide.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@functools.cache
def tiny_components_dir() -> Path:
    """Build every tiny component once per process in a temporary folder (removed at exit)."""
    root = Path(tempfile.mkdtemp(prefix="cf_hf_tiny_generation_"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    build_tiny_sdxl_text_to_image(root / "text_to_image")
    build_tiny_sdxl_inpainting(root / "inpainting")
    build_tiny_segformer(root / "segformer")
    build_tiny_causal_lm(root / "causal_lm")
    return root


# Settings that make the tiny models quick and every base image pass the mask bounds or not in a
# known way: at 64 px the random SegFormer's person labels cover 1-5% of an image.
TINY_MIN_MASK_AREA = 0.005
TINY_GRID = {"gender": ["female", "male"], "age": ["young", "old"]}


def tiny_components(root: Path, caption_writer: str = "templates") -> dict:
    """The default component classes on the tiny models (nothing loads until called)."""
    from cf_hf.generation.base_images import DiffusersTextToImage
    from cf_hf.generation.captions import LLMCaptionWriter, TemplateCaptionWriter
    from cf_hf.generation.inpainting import DiffusersInpainter
    from cf_hf.generation.masks import SegformerSegmenter

    return {
        "caption_writer": LLMCaptionWriter(str(root / "causal_lm"), max_new_tokens=12)
        if caption_writer == "llm"
        else TemplateCaptionWriter(),
        "text_to_image": DiffusersTextToImage(str(root / "text_to_image"), height=IMAGE_SIZE, width=IMAGE_SIZE),
        "segmenter": SegformerSegmenter(str(root / "segformer")),
        # 2 steps at strength 1.0: 1 step with strength < 1 would leave no denoising step.
        "inpainter": DiffusersInpainter(str(root / "inpainting"), num_inference_steps=2, strength=1.0, guidance_scale=0.0),
    }


def tiny_config(**overrides):
    from cf_hf.concepts import AttributeGrid, load_concepts, load_decorators
    from cf_hf.generation import GenerationConfig
    from cf_hf.generation.masks import MaskPostprocessing

    settings = {
        "concepts": load_concepts(names=["doctor", "nurse"]),
        "attribute_grid": AttributeGrid.from_values(TINY_GRID),
        "decorators": load_decorators(),
        "captions_per_concept": 2,
        "decorators_per_caption": 2,
        "appearances_per_base": 2,
        "shard_size": 3,
        "mask_postprocessing": MaskPostprocessing(min_area=TINY_MIN_MASK_AREA),
    }
    settings.update(overrides)
    return GenerationConfig(**settings)


def read_run_rows(run_dir: Path) -> list[dict]:
    """Every row of a finished run, in order, images as bytes."""
    import json

    from cf_hf.generation.run_folder import RunFolder

    manifest = json.loads((Path(run_dir) / "manifest.json").read_text())
    return list(RunFolder(run_dir).iter_rows(manifest["num_shards"]))


def tiny_cli_args(root: Path, output_dir: Path, grid_file: Path, *extra: str) -> list[str]:
    """`cf-hf generate` arguments that run the default component classes on the tiny models."""
    return [
        "generate", "--output_dir", str(output_dir), "--concepts", "doctor", "nurse",
        "--captions_per_concept", "2", "--decorators_per_caption", "2", "--appearances_per_base", "2",
        "--attribute_grid_file", str(grid_file), "--caption_model", str(root / "causal_lm"),
        "--text_to_image_model", str(root / "text_to_image"), "--image_size", str(IMAGE_SIZE),
        "--segmentation_model", str(root / "segformer"), "--min_mask_area", str(TINY_MIN_MASK_AREA),
        "--inpainting_model", str(root / "inpainting"), "--inpainting_steps", "2",
        "--inpainting_strength", "1.0", "--inpainting_guidance", "0", "--no_progress", *extra,
    ]  # fmt: skip


def write_tiny_grid(path: Path) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"attributes": TINY_GRID}))
    return path
