"""The world's original CLIP, shipped: pretrained once by `cf-hf demo --pretrain`, loaded by the demo.

Pretraining is deterministic and the model is small (about 0.9M parameters), so, like the
tokenizer, it ships with the package (`ORIGINAL_DIR`) and the demo starts from it instead of
pretraining for minutes. `shipped.json` records what produced it: the corpus and pretraining
settings, a digest of the corpus, a digest of the weights, and a fingerprint of the weights after the
first `CHECK_STEPS` steps, which a test replays to show that the shipped model is what this code
produces. When the demo's corpus or pretraining differ from the record (another world, another
schedule), the demo pretrains its own original; `--quick` loads this one too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from cf_hf.generation.runtime import sha256_of

from .corpus import CorpusConfig, SceneSet, make_corpus
from .pretrain import PretrainConfig, pretrain_original_clip

ORIGINAL_DIR = Path(__file__).resolve().parent / "original_clip"
RECORD_FILE = "shipped.json"
WEIGHTS_FILE = "model.safetensors"
# Steps replayed by the check that the shipped weights come from this code.
CHECK_STEPS = 20


def corpus_digest(corpus: SceneSet) -> str:
    """sha256 over the corpus's images and captions: what the original is pretrained on."""
    digest = hashlib.sha256(np.ascontiguousarray(corpus.images).tobytes())
    digest.update("\n".join(map(str, corpus.captions)).encode("utf-8"))
    return digest.hexdigest()


def weights_fingerprint(model) -> dict[str, list[float]]:
    """Per tensor, the sum and the sum of squares (float64): a compact, tolerance-comparable summary."""
    return {name: [float(tensor.double().sum()), float(tensor.double().square().sum())]
            for name, tensor in model.state_dict().items() if tensor.is_floating_point()}


def settings_record(corpus_config: CorpusConfig, pretrain_config: PretrainConfig) -> dict:
    """The settings that determine the original, as JSON."""
    return json.loads(json.dumps({"corpus": asdict(corpus_config), "pretrain": asdict(pretrain_config)}))


def _pretrain(corpus: SceneSet, config: PretrainConfig, **kwargs):
    import torch

    torch.manual_seed(config.seed)
    return pretrain_original_clip(corpus, config, **kwargs)


def write_shipped_original(corpus_config: CorpusConfig | None = None, pretrain_config: PretrainConfig | None = None,
                           path: str | Path = ORIGINAL_DIR, log=print) -> Path:
    """Pretrain the original on the corpus and write it, with its record, to `path`."""
    corpus_config = corpus_config or CorpusConfig()
    pretrain_config = pretrain_config or PretrainConfig()
    path = Path(path)
    corpus = make_corpus(corpus_config)
    check_model, _, _ = _pretrain(corpus, pretrain_config, log=None, stop_after=CHECK_STEPS)
    _pretrain(corpus, pretrain_config, output_dir=path, log=log)
    record = {
        "settings": settings_record(corpus_config, pretrain_config),
        "corpus_sha256": corpus_digest(corpus),
        "weights_sha256": sha256_of(path / WEIGHTS_FILE),
        "check_steps": CHECK_STEPS,
        "check_fingerprint": weights_fingerprint(check_model),
    }
    (path / RECORD_FILE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return path


def read_record(path: str | Path = ORIGINAL_DIR) -> dict | None:
    """The shipped record, or None when nothing is shipped at `path`."""
    try:
        return json.loads((Path(path) / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def shipped_original(corpus: SceneSet | None, corpus_config: CorpusConfig, pretrain_config: PretrainConfig,
                     path: str | Path = ORIGINAL_DIR) -> tuple[Path | None, str]:
    """(the shipped checkpoint folder, why) when it was pretrained with exactly these settings on
    exactly this corpus and its weights are intact; (None, why not) otherwise.

    `corpus=None` skips the corpus digest: the demo does so to spare building a corpus it would only
    hash, and the test suite checks instead that today's world draws the recorded corpus
    (tests/world/test_world_original.py), so a change of the world's rendering cannot ship unnoticed."""
    path = Path(path)
    record = read_record(path)
    if record is None:
        return None, "no shipped original"
    if record["settings"] != settings_record(corpus_config, pretrain_config):
        return None, "the shipped original was pretrained with other settings"
    if corpus is not None and record["corpus_sha256"] != corpus_digest(corpus):
        return None, "the shipped original was pretrained on another corpus (the world's rendering changed)"
    if not (path / WEIGHTS_FILE).is_file() or sha256_of(path / WEIGHTS_FILE) != record["weights_sha256"]:
        return None, "the shipped weights do not match their record"
    return path, "shipped"
