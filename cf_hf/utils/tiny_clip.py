"""Small `transformers` CLIP models built offline: a BPE `CLIPTokenizer` trained on a corpus and a
randomly initialised `CLIPModel` of chosen size.

Used by the embedded professions world (its "original CLIP" is pretrained from scratch) and by the
tests, which must never download weights. The classes are the real ones (`CLIPModel`,
`CLIPTokenizer`, `CLIPImageProcessor`, `CLIPProcessor`), so every code path that loads a Hub
checkpoint is exercised on them unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
# Diffusers pipelines and CLIP text towers expect 77 positions.
MODEL_MAX_LENGTH = 77
# Every printable byte, so that no character of an unseen word falls back to the unknown token,
# which for CLIP is the end-of-text token that the text tower pools on.
_ALPHABET = [chr(code) for code in range(33, 127)]


def train_clip_tokenizer(texts: Iterable[str], vocab_size: int = 512) -> CLIPTokenizer:
    """Train a CLIP-style BPE (lower-cased, `</w>` word suffix) on `texts`.

    The alphabet is included both bare and with the `</w>` suffix: without the suffixed forms an
    unseen word-final character becomes the unknown token (see module docstring).
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=EOS_TOKEN, end_of_word_suffix="</w>"))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS_TOKEN, EOS_TOKEN],
        initial_alphabet=_ALPHABET,
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    vocab: dict[str, int] = dict(tokenizer.get_vocab())
    for character in _ALPHABET:
        for token in (character, character + "</w>"):
            if token not in vocab:
                vocab[token] = len(vocab)
    # The trained merges, as tuples (CLIPTokenizer rejects "a b" strings).
    merges = [
        tuple(merge.split(" ")) if isinstance(merge, str) else tuple(merge)
        for merge in json.loads(tokenizer.to_str())["model"]["merges"]
    ]
    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        model_max_length=MODEL_MAX_LENGTH,
    )


@dataclass
class TinyCLIPSpec:
    """Sizes of a small CLIP. Defaults: the smallest model the tests use."""

    image_size: int = 32
    patch_size: int = 8
    vision_width: int = 32
    vision_layers: int = 2
    vision_heads: int = 2
    text_width: int = 32
    text_layers: int = 2
    text_heads: int = 2
    projection_dim: int = 16
    max_position_embeddings: int = MODEL_MAX_LENGTH


def tiny_clip_config(tokenizer: CLIPTokenizer, spec: TinyCLIPSpec | None = None) -> CLIPConfig:
    """A `CLIPConfig` whose special-token ids are the tokenizer's (the default 49407 breaks pooling)."""
    spec = spec or TinyCLIPSpec()
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": spec.text_width,
        "intermediate_size": 4 * spec.text_width,
        "num_hidden_layers": spec.text_layers,
        "num_attention_heads": spec.text_heads,
        "max_position_embeddings": spec.max_position_embeddings,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "projection_dim": spec.projection_dim,
    }
    vision_config = {
        "image_size": spec.image_size,
        "patch_size": spec.patch_size,
        "hidden_size": spec.vision_width,
        "intermediate_size": 4 * spec.vision_width,
        "num_hidden_layers": spec.vision_layers,
        "num_attention_heads": spec.vision_heads,
        "projection_dim": spec.projection_dim,
    }
    return CLIPConfig(
        text_config=text_config, vision_config=vision_config, projection_dim=spec.projection_dim
    )


def tiny_clip_processor(tokenizer: CLIPTokenizer, image_size: int = 32) -> CLIPProcessor:
    """A `CLIPProcessor` that resizes/crops to `image_size` with CLIP's normalization."""
    # Imported here: without torchvision, importing this name makes transformers warn that it falls
    # back to the PIL backend, and every command imports this module.
    from transformers import CLIPImageProcessor

    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    return CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def build_tiny_clip(
    texts: Iterable[str] | None = None,
    spec: TinyCLIPSpec | None = None,
    vocab_size: int = 512,
    seed: int = 0,
    tokenizer: CLIPTokenizer | None = None,
) -> tuple[CLIPModel, CLIPProcessor]:
    """A randomly initialised `CLIPModel` (seeded) and its processor, with `tokenizer` or a
    tokenizer trained on `texts`.

    BPE training (the `tokenizers` library) breaks ties between equally frequent pairs in a
    different order from run to run, so two tokenizers trained on the same texts may differ; pass a
    saved tokenizer where runs must be reproducible.
    """
    import torch

    spec = spec or TinyCLIPSpec()
    if tokenizer is None:
        if texts is None:
            raise ValueError("build_tiny_clip needs texts to train a tokenizer on, or a tokenizer")
        tokenizer = train_clip_tokenizer(texts, vocab_size=vocab_size)
    torch.manual_seed(seed)
    model = CLIPModel(tiny_clip_config(tokenizer, spec))
    return model, tiny_clip_processor(tokenizer, spec.image_size)
