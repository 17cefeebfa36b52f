"""The embedding engine: images and texts to unit-norm CLIP embeddings, batched and cached.

* Batched under `torch.inference_mode`, on the configured device and dtype, with a progress bar.
* Images are opened one batch at a time and written into a preallocated (n_images, dim) array, so
  memory holds one batch of pixels plus the embeddings; with a cache folder the array is a
  memory-mapped `.npy` file on disk (float16 or float32, `storage_dtype`), so even the embeddings
  of a 1M-image gallery need not fit in memory.
* Embeddings are cached per (tower fingerprint, data fingerprint). The image key hashes the vision
  tower's weights, its config and the image processor; the text key hashes the text tower and the
  tokenizer. In an α sweep whose fine-tuning froze the vision tower, the gallery is embedded once;
  α = 0 and the original model share every entry.
* For a plain `CLIPModel` the tower's pooled output (before the projection) is cached too, keyed by
  the tower without its projection: methods that change only a projection (CLIP-clip, biased
  prompts, any folded linear map) reuse the original's forward passes and cost one matrix product.
* Preprocessed pixels of a set that fits `pixel_cache_mb` are kept per (set, image processor), so
  the models of a sweep preprocess each set once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cache import EmbeddingCache
from .sets import fingerprint_images

logger = logging.getLogger(__name__)
# Characters of a too-long text shown in the warning that it was cut.
TRUNCATION_SHOWN_CHARACTERS = 60
# Parameter-name prefixes of each CLIP tower (transformers `CLIPModel`).
IMAGE_TOWER_PREFIXES = ("vision_model.", "visual_projection.")
TEXT_TOWER_PREFIXES = ("text_model.", "text_projection.")
STORAGE_DTYPES = ("float32", "float16")
COMPUTE_DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
                  "bfloat16": "bfloat16", "bf16": "bfloat16"}
# Config keys that do not change what a tower computes.
_IGNORED_CONFIG_KEYS = ("_name_or_path", "transformers_version", "architectures", "dtype", "torch_dtype")


@dataclass
class EmbeddingConfig:
    """How embeddings are computed and kept.

    Attributes:
        device: torch device ("cpu", "cuda", "cuda:1", "mps").
        dtype: compute dtype of the model ("float32", "float16", "bfloat16"); float32 on CPU unless
            asked otherwise.
        batch_size: images (or texts) per forward pass.
        storage_dtype: dtype the embeddings are stored in ("float32" or "float16").
        cache_dir: folder for memory-mapped embedding files; None keeps them in memory only.
        memory_cache_mb: in-memory cache budget (MB) for embeddings reused across models of one
            run (e.g. the gallery embedded by α = 0 and by the original model).
        pixel_cache_mb: in-memory budget (MB) for preprocessed pixels of image sets small enough to
            keep whole, reused by every model with the same image processor (an α sweep preprocesses
            each set once); 0 turns it off. Larger sets are preprocessed per model, as before.
        progress: show progress bars.
        num_workers: threads that decode and load the next batch of images while the model runs
            on the current one (0: decode in the calling thread). Decoding order and results are
            the same either way.
    """

    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 64
    storage_dtype: str = "float32"
    cache_dir: str | None = None
    memory_cache_mb: int = 1024
    pixel_cache_mb: int = 512
    progress: bool = True
    num_workers: int = 0

    def __post_init__(self):
        if self.dtype not in COMPUTE_DTYPES:
            raise ValueError(f"dtype={self.dtype!r} is not known: use one of {sorted(COMPUTE_DTYPES)}")
        if self.storage_dtype not in STORAGE_DTYPES:
            raise ValueError(f"storage_dtype={self.storage_dtype!r}: use one of {STORAGE_DTYPES}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.pixel_cache_mb < 0:
            raise ValueError(f"pixel_cache_mb must be >= 0, got {self.pixel_cache_mb}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")


def _hash_json(digest, value) -> None:
    digest.update(json.dumps(value, sort_keys=True, default=str).encode())


def _config_dict(config) -> dict:
    if config is None:
        return {}
    values = config.to_dict() if hasattr(config, "to_dict") else dict(vars(config))
    return {key: value for key, value in values.items() if key not in _IGNORED_CONFIG_KEYS}


def tower_fingerprint(model, prefixes: Sequence[str], extra: dict, class_name: str | None = None) -> str:
    """Hash of the parameters and buffers whose names start with `prefixes` (all of them if none
    match, e.g. for a custom model), plus `extra` (config, processor, device, dtype) and the class
    that computes the tower (`class_name`; default: the model's)."""
    import torch

    state = model.state_dict()
    names = sorted(name for name in state if name.startswith(tuple(prefixes))) or sorted(state)
    digest = hashlib.blake2b(digest_size=16)
    _hash_json(digest, {"class": class_name or type(model).__qualname__, **extra})
    for name in names:
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _has_config(model) -> bool:
    return hasattr(getattr(model, "config", None), "to_dict")


def _module_settings(model) -> dict:
    """Plain attributes of a custom (non-`transformers`) model that may change what it computes."""
    return {name: repr(value) for name, value in sorted(vars(model).items())
            if not name.startswith("_") and name != "training"}


def _features(output):
    """`get_*_features` returns a tensor (transformers 4) or an output with `pooler_output` (5)."""
    return output if hasattr(output, "shape") else output.pooler_output


def open_image(item):
    """A PIL RGB image from a path, PIL image, numpy array or `datasets` image dict."""
    from PIL import Image

    if isinstance(item, (str, Path)):
        try:
            with Image.open(item) as image:
                return image.convert("RGB")
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot open image {str(item)!r}: {error}") from None
    if isinstance(item, dict):
        if item.get("bytes"):
            import io

            return open_image(Image.open(io.BytesIO(item["bytes"])))
        if item.get("path"):
            return open_image(item["path"])
    if isinstance(item, np.ndarray):
        return Image.fromarray(item).convert("RGB")
    if isinstance(item, Image.Image):
        return item.convert("RGB")
    raise TypeError(f"cannot read an image from a {type(item).__name__}")


def _batches(images: Sequence, batch_size: int):
    getter = getattr(images, "get_batch", None)
    for start in range(0, len(images), batch_size):
        stop = min(start + batch_size, len(images))
        yield start, stop, (getter(start, stop) if getter else [images[index] for index in range(start, stop)])


def _decoded_batches(images: Sequence, batch_size: int, num_workers: int):
    """(start, stop, PIL images) per batch; with workers, the next batch decodes in the background."""
    if num_workers == 0:
        for start, stop, batch in _batches(images, batch_size):
            yield start, stop, [open_image(item) for item in batch]
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(num_workers) as pool:
        pending = None
        for start, stop, batch in _batches(images, batch_size):
            submitted = (start, stop, [pool.submit(open_image, item) for item in batch])
            if pending is not None:
                yield pending[0], pending[1], [future.result() for future in pending[2]]
            pending = submitted
        if pending is not None:
            yield pending[0], pending[1], [future.result() for future in pending[2]]


class _PixelCache:
    """Preprocessed pixel tensors of whole image sets, by (set fingerprint, processor), in a bounded
    LRU shared by the process (one per budget)."""

    _shared: dict[int, _PixelCache] = {}

    @classmethod
    def shared(cls, budget_mb: int) -> _PixelCache:
        if budget_mb not in cls._shared:
            cls._shared[budget_mb] = cls(budget_mb)
        return cls._shared[budget_mb]

    def __init__(self, budget_mb: int):
        self.budget = budget_mb * 2**20
        self._entries: OrderedDict[tuple, object] = OrderedDict()

    def get(self, key: tuple):
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        return None

    def fits(self, nbytes: int) -> bool:
        return 0 < nbytes <= self.budget

    def put(self, key: tuple, pixels) -> None:
        self._entries[key] = pixels
        while sum(value.numel() * value.element_size() for value in self._entries.values()) > self.budget:
            self._entries.popitem(last=False)


def _plain_clip_towers(model) -> dict:
    """{"vision": (backbone, projection, post_map), "text": (...)} with the towers of `model` that compute
    their features from a `CLIPModel`'s projection of the backbone's pooled output: `post_map` None for a
    tower computed exactly as `CLIPModel`'s (a subclass that overrides only `get_text_features`, as
    BendVLM, keeps a plain image tower), or the model's `map_projected_features(features, tower)` when it
    declares that its `get_*_features` are that map of the projection (`TransformedCLIPModel`). Empty for
    a custom model, which is then embedded through its own methods."""
    try:
        from transformers import CLIPModel
    except ImportError:  # pragma: no cover - transformers is a dependency
        return {}
    if not isinstance(model, CLIPModel):
        return {}
    cls = type(model)
    post_map = getattr(model, "map_projected_features", None)
    towers = {}
    for tower, method, backbone, projection, name in (
            ("vision", "get_image_features", model.vision_model, model.visual_projection, "image"),
            ("text", "get_text_features", model.text_model, model.text_projection, "text")):
        if getattr(cls, method) is getattr(CLIPModel, method):
            towers[tower] = (backbone, projection, None)
        elif callable(post_map):
            towers[tower] = (backbone, projection, lambda features, name=name: post_map(features, name))
    return towers


def clip_model_class(path: str | Path, revision: str | None = None):
    """The class a checkpoint loads as: `CLIPModel` for `model_type: clip`, otherwise the class
    registered for its model type with `AutoModel` (e.g. cf_hf's bias-aligned CLIP, registered by
    `cf_hf.methods.register_model_types()` or by importing its module)."""
    from transformers import CLIPModel, PretrainedConfig
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    config, _ = PretrainedConfig.get_config_dict(str(path), revision=revision)
    model_type = config.get("model_type")
    if model_type in (None, "clip"):
        return CLIPModel
    from transformers import AutoConfig, AutoModel

    try:
        AutoConfig.for_model(model_type)
    except ValueError:
        raise ValueError(
            f"{path}: model_type {model_type!r} is not registered with transformers' AutoConfig; import the module "
            "that registers it (cf_hf's own: cf_hf.methods.register_model_types())"
        ) from None
    if model_type in MODEL_MAPPING_NAMES and MODEL_MAPPING_NAMES[model_type] != "CLIPModel":
        raise ValueError(f"{path}: a {model_type!r} checkpoint, not a CLIP model")
    return AutoModel


class EmbeddingEngine:
    """A CLIP-like model (anything with `get_image_features`/`get_text_features`) + its processor.

    Use `EmbeddingEngine.from_pretrained(path_or_hub_id)` for checkpoints; the constructor takes a
    model object (e.g. an in-memory model of the professions world).
    """

    def __init__(self, model, processor, config: EmbeddingConfig | None = None,
                 cache: EmbeddingCache | None = None, name: str = "model"):
        import torch

        self.config = config or EmbeddingConfig()
        self.name = name
        self.device = torch.device(self.config.device)
        self.dtype = getattr(torch, COMPUTE_DTYPES[self.config.dtype])
        self.model = model.to(self.device, self.dtype).eval()
        self.processor = processor
        if cache is None:
            # Only `transformers` models are fully described by weights + config: share the
            # process-wide cache with them; any other model gets a cache of its own.
            cache = (EmbeddingCache.shared(self.config.cache_dir, self.config.memory_cache_mb)
                     if _has_config(model) else EmbeddingCache(self.config.cache_dir, self.config.memory_cache_mb))
        self.cache = cache
        self._image_fingerprint: str | None = None
        self._text_fingerprint: str | None = None
        self._backbone_fingerprints: dict[str, str] = {}
        self._towers = _plain_clip_towers(self.model)
        self._pixels = _PixelCache.shared(self.config.pixel_cache_mb)

    @classmethod
    def from_pretrained(cls, path: str | Path, config: EmbeddingConfig | None = None,
                        cache: EmbeddingCache | None = None, name: str | None = None,
                        revision: str | None = None) -> EmbeddingEngine:
        """Load a `CLIPModel` checkpoint and its processor (local folder or Hub id); a cf_hf
        bias-aligned checkpoint loads as `BiasAlignedCLIPModel` (its debiased embeddings)."""
        import torch
        from transformers import AutoProcessor

        from cf_hf.utils.model_loading import model_loading

        config = config or EmbeddingConfig()
        with model_loading(str(path), "CLIP checkpoint", revision):
            model = clip_model_class(path, revision).from_pretrained(
                str(path), revision=revision, dtype=getattr(torch, COMPUTE_DTYPES[config.dtype]))
            processor = AutoProcessor.from_pretrained(str(path), revision=revision)
        return cls(model, processor, config=config, cache=cache, name=name or Path(str(path)).name)

    # -- fingerprints ---------------------------------------------------------------------------

    def _extra(self, tower: str) -> dict:
        config = getattr(self.model, "config", None)
        sub_config = getattr(config, f"{tower}_config", None)
        extra = {"tower": tower, "device": self.device.type, "dtype": str(self.dtype),
                 "config": _config_dict(sub_config),
                 "projection_dim": getattr(config, "projection_dim", None)}
        if not _has_config(self.model):
            extra["settings"] = _module_settings(self.model)
        if tower == "vision":
            image_processor = getattr(self.processor, "image_processor", self.processor)
            extra["processor"] = image_processor.to_dict() if hasattr(image_processor, "to_dict") else repr(image_processor)
        else:
            tokenizer = self._tokenizer()
            vocab = sorted(tokenizer.get_vocab().items()) if hasattr(tokenizer, "get_vocab") else repr(tokenizer)
            extra["tokenizer"] = {"class": type(tokenizer).__name__, "vocab": hashlib.blake2b(
                json.dumps(vocab).encode(), digest_size=16).hexdigest(),
                "max_length": self._max_text_length()}
        return extra

    def _tower_class(self, tower: str) -> str:
        """The class name a tower's fingerprint records: "CLIPModel" for a tower that computes as a plain
        `CLIPModel`'s (so a BendVLM checkpoint, whose image tower is the original's, shares the original's
        image embeddings), the model's own class otherwise (a transformed tower never shares them; it may
        share the backbone's pooled outputs, see `_backbone_fingerprint`)."""
        plain = tower in self._towers and self._towers[tower][2] is None
        return "CLIPModel" if plain else type(self.model).__qualname__

    @property
    def image_fingerprint(self) -> str:
        """Key of everything that determines the image embeddings."""
        if self._image_fingerprint is None:
            prefixes = getattr(self.model, "image_tower_prefixes", IMAGE_TOWER_PREFIXES)
            self._image_fingerprint = tower_fingerprint(self.model, prefixes, self._extra("vision"),
                                                        self._tower_class("vision"))
        return self._image_fingerprint

    def _backbone_fingerprint(self, tower: str) -> str:
        """Key of the tower without its projection: what its pooled output depends on."""
        if tower not in self._backbone_fingerprints:
            prefix = "vision_model." if tower == "vision" else "text_model."
            extra = {**self._extra(tower), "output": "pooled"}
            extra.pop("projection_dim", None)
            # The pooled output is the backbone's whatever follows the projection: keyed as CLIPModel's.
            self._backbone_fingerprints[tower] = tower_fingerprint(self.model, (prefix,), extra, "CLIPModel")
        return self._backbone_fingerprints[tower]

    @property
    def text_fingerprint(self) -> str:
        """Key of everything that determines the text embeddings."""
        if self._text_fingerprint is None:
            prefixes = getattr(self.model, "text_tower_prefixes", TEXT_TOWER_PREFIXES)
            self._text_fingerprint = tower_fingerprint(self.model, prefixes, self._extra("text"),
                                                       self._tower_class("text"))
        return self._text_fingerprint

    # -- embedding -----------------------------------------------------------------------------

    def _tokenizer(self):
        return getattr(self.processor, "tokenizer", self.processor)

    def _warn_on_truncation(self, tokenizer, texts: list[str]) -> None:
        """Say which texts are longer than the text tower reads (they are cut to its first tokens)."""
        limit = self._max_text_length()
        long_texts = [(text, len(ids)) for text, ids in zip(texts, tokenizer(texts, truncation=False)["input_ids"])
                      if len(ids) > limit]
        if long_texts:
            text, length = long_texts[0]
            shown = text if len(text) <= TRUNCATION_SHOWN_CHARACTERS else text[:TRUNCATION_SHOWN_CHARACTERS] + "..."
            logger.warning("%s: %d text(s) are longer than the %d tokens the text tower reads and are cut to them, "
                           "e.g. %r (%d tokens)", self.name, len(long_texts), limit, shown, length)

    def _max_text_length(self) -> int:
        config = getattr(getattr(self.model, "config", None), "text_config", None)
        return int(getattr(config, "max_position_embeddings", 77))

    def _progress(self, total: int, description: str):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=f"{self.name}: {description}", unit="img" if "image" in description else "txt",
                    disable=not self.config.progress, leave=False)

    def embed_images(self, images: Sequence, fingerprint: str | None = None, normalize: bool = True) -> np.ndarray:
        """Unit-norm image embeddings, (n_images, dim), in `storage_dtype`; cached.

        Args:
            images: paths, PIL images, arrays, or a lazy sequence (with `get_batch(start, stop)`).
            fingerprint: the images' content key if known (default: `fingerprint_images`).
            normalize: False gives the model's unnormalized embeddings (cached under their own key).
        """
        images_key = fingerprint or fingerprint_images(images)
        storage = self.config.storage_dtype
        if not normalize:
            raw_key = f"image-raw-{self.image_fingerprint}-{images_key}-{storage}"
            cached = self.cache.get(raw_key)
            if cached is not None:
                return cached
            return self._run_images(images, images_key, raw_key, self.model.get_image_features, normalize=False)
        key = f"image-{self.image_fingerprint}-{images_key}-{storage}"
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        if "vision" not in self._towers:
            return self._run_images(images, images_key, key, self.model.get_image_features, normalize=True)
        backbone, projection, post_map = self._towers["vision"]
        pooled_key = f"pooled-image-{self._backbone_fingerprint('vision')}-{images_key}-{storage}"
        pooled = self.cache.get(pooled_key, count=False)
        if pooled is None:
            pooled = self._run_images(images, images_key, pooled_key, backbone, normalize=False)
        return self._project(pooled, projection, key, storage, post_map)

    def _pixel_batches(self, images: Sequence, images_key: str):
        """(start, stop, pixel_values) per batch; whole sets within `pixel_cache_mb` are kept."""
        import torch

        image_processor = getattr(self.processor, "image_processor", self.processor)
        processor_key = hashlib.blake2b(json.dumps(
            image_processor.to_dict() if hasattr(image_processor, "to_dict") else repr(image_processor),
            sort_keys=True, default=str).encode(), digest_size=16).hexdigest()
        cache_key = (images_key, processor_key)
        kept = self._pixels.get(cache_key)
        if kept is not None:
            for start in range(0, len(images), self.config.batch_size):
                yield start, min(start + self.config.batch_size, len(images)), kept[start:start + self.config.batch_size]
            return
        parts, keep = [], self.config.pixel_cache_mb > 0
        for start, stop, batch in _decoded_batches(images, self.config.batch_size, self.config.num_workers):
            pixels = image_processor(images=batch, return_tensors="pt")["pixel_values"]
            if keep:
                parts.append(pixels)
                # Stop keeping as soon as the set is known not to fit (estimated from this batch).
                keep = self._pixels.fits(pixels[0].numel() * pixels.element_size() * len(images))
                if not keep:
                    parts = []
            yield start, stop, pixels
        if keep and parts:
            self._pixels.put(cache_key, torch.cat(parts))

    def _run_images(self, images: Sequence, images_key: str, key: str, forward, normalize: bool) -> np.ndarray:
        """`forward(pixel_values=...)` over every batch into the cache entry `key`."""
        import torch

        output = None
        with torch.inference_mode(), self._progress(len(images), "embedding images") as bar:
            for start, stop, pixels in self._pixel_batches(images, images_key):
                features = _features(forward(pixel_values=pixels.to(self.device, self.dtype))).float()
                if normalize:
                    features = torch.nn.functional.normalize(features, dim=-1)
                features = features.cpu().numpy()
                if output is None:
                    output = self.cache.allocate(key, (len(images), features.shape[1]), self.config.storage_dtype)
                output[start:stop] = features
                bar.update(stop - start)
        return self.cache.commit(key, output)

    def _project(self, pooled: np.ndarray, projection, key: str, dtype: str, post_map=None) -> np.ndarray:
        """Unit-norm `projection` of cached pooled outputs (then `post_map`, the model's map of projected
        features, when given), into the cache entry `key`."""
        import torch

        output = self.cache.allocate(key, (len(pooled), projection.out_features), dtype)
        step = 65536  # rows per matrix product: bounded memory for memory-mapped galleries
        with torch.inference_mode():
            for start in range(0, len(pooled), step):
                chunk = torch.from_numpy(np.array(pooled[start:start + step], dtype=np.float32))
                features = projection(chunk.to(self.device, self.dtype))
                features = (features if post_map is None else post_map(features)).float()
                output[start:start + len(chunk)] = torch.nn.functional.normalize(features, dim=-1).cpu().numpy()
        return self.cache.commit(key, output)

    def embed_texts(self, texts: Sequence[str], normalize: bool = True) -> np.ndarray:
        """Unit-norm text embeddings, (n_texts, dim), float32; cached. `normalize=False`: the
        model's unnormalized embeddings."""

        texts = [str(text) for text in texts]
        if not texts:
            raise ValueError("no texts to embed")
        digest = hashlib.blake2b("\n".join(texts).encode(), digest_size=16).hexdigest()
        if not normalize:
            raw_key = f"text-raw-{self.text_fingerprint}-{digest}"
            cached = self.cache.get(raw_key)
            if cached is None:
                cached = self._run_texts(texts, raw_key, self.model.get_text_features, normalize=False)
            return np.asarray(cached, dtype=np.float32)
        key = f"text-{self.text_fingerprint}-{digest}"
        cached = self.cache.get(key)
        if cached is not None:
            return np.asarray(cached, dtype=np.float32)
        if "text" not in self._towers:
            return np.asarray(self._run_texts(texts, key, self.model.get_text_features, normalize=True),
                              dtype=np.float32)
        backbone, projection, post_map = self._towers["text"]
        pooled_key = f"pooled-text-{self._backbone_fingerprint('text')}-{digest}"
        pooled = self.cache.get(pooled_key, count=False)
        if pooled is None:
            pooled = self._run_texts(texts, pooled_key, backbone, normalize=False)
        return np.asarray(self._project(pooled, projection, key, "float32", post_map), dtype=np.float32)

    def _run_texts(self, texts: list[str], key: str, forward, normalize: bool) -> np.ndarray:
        """`forward(input_ids=..., attention_mask=...)` over every batch into the cache entry `key`."""
        import torch

        tokenizer = self._tokenizer()
        self._warn_on_truncation(tokenizer, texts)
        parts = []
        with torch.inference_mode(), self._progress(len(texts), "embedding texts") as bar:
            for start in range(0, len(texts), self.config.batch_size):
                batch = texts[start:start + self.config.batch_size]
                tokens = tokenizer(batch, padding=True, truncation=True, max_length=self._max_text_length(),
                                   return_tensors="pt")
                features = _features(forward(input_ids=tokens["input_ids"].to(self.device),
                                             attention_mask=tokens["attention_mask"].to(self.device))).float()
                if normalize:
                    features = torch.nn.functional.normalize(features, dim=-1)
                parts.append(features.cpu().numpy())
                bar.update(len(batch))
        embeddings = np.concatenate(parts).astype(np.float32)
        stored = self.cache.allocate(key, embeddings.shape, "float32")
        stored[:] = embeddings
        return self.cache.commit(key, stored)
