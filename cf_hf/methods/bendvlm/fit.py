"""BendVLM fitted from a checkpoint and an attribute-labelled reference set: one checkpoint per
neighbourhood size. "Fitting" is embedding: the reference images, the attribute prompts and the
augmentation templates' tokens are stored in the checkpoint for use at query time."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cf_hf.methods.attribute_prompts import AttributePrompts, load_attribute_prompts
from cf_hf.methods.checkpoints import MethodCheckpoint, embedding_engine
from cf_hf.methods.linear import (
    MethodError,
    attribute_list,
    attribute_settings,
    check_output_folder,
    load_clip,
)

# The neighbourhood sizes swept by default (reference images per value).
DEFAULT_NEIGHBORS = (100,)


@dataclass
class BendVLMFit:
    """What BendVLM stores: it is query-dependent, so no fixed map exists and it cannot fold into a
    plain `CLIPModel` (`cf_hf.methods.fold` refuses it); `save_bendvlm` writes a `BendVLMCLIPModel`.

    Attributes:
        prompts: the attribute, its values and templates; or several attributes' (removed jointly).
        reference_embeddings: (n, d) unit-norm reference image embeddings; reference_labels: (n,) value
            indices, (n, A) with several attributes.
        attribute_prompts: (V, d) unit-norm attribute prompt embeddings (each value's prompts averaged;
            attribute-major with several attributes).
        neighbors: reference images per value that define its local mean.
        fitted_on: what the fit used (reference set, sizes, model).
    """

    prompts: AttributePrompts | Sequence[AttributePrompts]
    reference_embeddings: np.ndarray
    reference_labels: np.ndarray
    attribute_prompts: np.ndarray
    neighbors: int
    fitted_on: dict[str, Any] = field(default_factory=dict)
    method: str = "bendvlm"

    @property
    def prompt_sets(self) -> list[AttributePrompts]:
        """The attributes' prompts, as a list (one entry for one attribute)."""
        return [self.prompts] if isinstance(self.prompts, AttributePrompts) else list(self.prompts)

    @property
    def settings(self) -> dict[str, Any]:
        return {**attribute_settings([prompts.attribute for prompts in self.prompt_sets]), "neighbors": self.neighbors}

    @property
    def name(self) -> str:
        return f"{self.method}-neighbors={self.neighbors}"

    def record(self) -> dict[str, Any]:
        sets = self.prompt_sets
        values = (list(sets[0].values) if len(sets) == 1
                  else {prompts.attribute: list(prompts.values) for prompts in sets})
        return {"method": self.method, "name": self.name, "settings": self.settings,
                "fitted_on": {**self.fitted_on, "prompts_file": sets[0].source, "values": values,
                              "query_templates": ["".join((prefix, "{query}", suffix))
                                                  for prefix, suffix in sets[0].query_templates]},
                "query_time": "the stored reference embeddings and attribute prompts; V×T extra text passes per query"}


def reference_labels(gallery, attribute: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(row indices with a label, sorted values, value index per kept row) of `gallery`'s `attribute`."""
    if attribute not in gallery.attributes:
        raise MethodError(f"bendvlm: the reference set {gallery.name!r} has no attribute column {attribute!r}; "
                          f"it has {sorted(gallery.attributes)}")
    labels = list(gallery.attributes[attribute])
    kept = np.array([index for index, label in enumerate(labels) if label is not None and label == label], dtype=np.int64)
    values = sorted({str(labels[index]) for index in kept})
    if len(values) < 2:
        raise MethodError(f"bendvlm: attribute {attribute!r} of the reference set {gallery.name!r} has "
                          f"{len(values)} value(s) {values}: BendVLM equalizes similarity between at least two")
    position = {value: index for index, value in enumerate(values)}
    return kept, values, np.array([position[str(labels[index])] for index in kept], dtype=np.int64)


def joint_reference_labels(gallery, attributes: Sequence[str]) -> tuple[np.ndarray, list[list[str]], np.ndarray]:
    """`reference_labels` of several attributes: (rows labelled for every attribute, each attribute's sorted
    values, (n_kept, A) value indices); one attribute: its (n_kept,) labels as `reference_labels` gives."""
    per_attribute = [reference_labels(gallery, attribute) for attribute in attributes]
    if len(per_attribute) == 1:
        kept, values, labels = per_attribute[0]
        return kept, [values], labels
    kept = sorted(set.intersection(*(set(rows.tolist()) for rows, _, _ in per_attribute)))
    columns = []
    for rows, _, labels in per_attribute:
        position = {row: index for index, row in enumerate(rows.tolist())}
        columns.append(labels[[position[row] for row in kept]])
    values = [values for _, values, _ in per_attribute]
    return np.asarray(kept, dtype=np.int64), values, np.stack(columns, axis=1)


def _token_table(tokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(len(texts), L) token ids without special tokens, padded with 0, and their lengths."""
    ids = [tokenizer(text, add_special_tokens=False)["input_ids"] if text.strip() else [] for text in texts]
    lengths = np.array([len(row) for row in ids], dtype=np.int64)
    table = np.zeros((len(ids), int(lengths.max(initial=0))), dtype=np.int64)
    for index, row in enumerate(ids):
        table[index, :len(row)] = row
    return table, lengths


def bendvlm_model(clip, tokenizer, fit: BendVLMFit):
    """`clip` (a `CLIPModel`, weights copied) with `fit`'s data as a `BendVLMCLIPModel`; `tokenizer` turns the
    augmentation templates into the token ids stored for query time."""
    import torch

    from cf_hf.methods.bendvlm.modeling import BendVLMCLIPConfig, BendVLMCLIPModel

    dimension = clip.config.projection_dim
    if fit.reference_embeddings.shape[1] != dimension or fit.attribute_prompts.shape[1] != dimension:
        raise MethodError(f"bendvlm: the stored embeddings have {fit.reference_embeddings.shape[1]} dimensions, the "
                          f"model {dimension}: fitted on another model")
    sets = fit.prompt_sets
    templates = sets[0].query_templates
    if any(prompts.query_templates != templates for prompts in sets):
        raise MethodError("bendvlm: the attributes' query templates differ; they come from one prompts file")
    # Value-major within each attribute, attributes in order: the rows the model's augmented queries follow.
    rows = [(prompts.words[value], template) for prompts in sets for value in prompts.values for template in templates]
    prefixes, prefix_lengths = _token_table(tokenizer, [prefix.format(value=word) for word, (prefix, _) in rows])
    suffixes, suffix_lengths = _token_table(tokenizer, [suffix.format(value=word) for word, (_, suffix) in rows])
    if len(sets) == 1:
        attribute_fields = {"attribute": sets[0].attribute, "values": list(sets[0].values)}
    else:
        attribute_fields = {"attribute": "", "attributes": [prompts.attribute for prompts in sets],
                            "values": [value for prompts in sets for value in prompts.values],
                            "value_counts": [len(prompts.values) for prompts in sets]}
    config = BendVLMCLIPConfig.from_clip_config(
        clip.config, **attribute_fields, neighbors=fit.neighbors,
        reference_size=len(fit.reference_embeddings), template_count=len(templates),
        prefix_length=prefixes.shape[1], suffix_length=suffixes.shape[1], cf_hf_method=fit.record())
    model = BendVLMCLIPModel(config)
    missing, unexpected = model.load_state_dict(clip.state_dict(), strict=False)
    if unexpected or not all(name.startswith("bendvlm.") for name in missing):
        raise MethodError(f"the CLIP weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
    data = model.bendvlm
    with torch.no_grad():
        data.reference_embeddings.copy_(torch.from_numpy(np.asarray(fit.reference_embeddings, dtype=np.float32)))
        data.reference_labels.copy_(torch.from_numpy(fit.reference_labels))
        data.attribute_prompts.copy_(torch.from_numpy(np.asarray(fit.attribute_prompts, dtype=np.float32)))
        data.prefix_ids.copy_(torch.from_numpy(prefixes))
        data.prefix_lengths.copy_(torch.from_numpy(prefix_lengths))
        data.suffix_ids.copy_(torch.from_numpy(suffixes))
        data.suffix_lengths.copy_(torch.from_numpy(suffix_lengths))
    return model.to(clip.dtype).eval()


def save_bendvlm(original: str | Path, fit: BendVLMFit, output_dir: str | Path, loaded=None) -> Path:
    """Save `original` with `fit` as a `BendVLMCLIPModel` in `output_dir` (atomically). `loaded`: the
    (model, processor) of `original` when the caller has them."""
    from cf_hf.methods.transformed import write_checkpoint

    check_output_folder(output_dir)
    clip, processor = loaded or load_clip(original)
    model = bendvlm_model(clip, getattr(processor, "tokenizer", processor), fit)
    return write_checkpoint(model, processor, output_dir)


def fit_bendvlm(original: str | Path, output_dir: str | Path, reference, attribute: str | Sequence[str],
                neighbors: Sequence[int] | None = None, prompts_file: str | Path | None = None,
                embedding_config=None) -> list[MethodCheckpoint]:
    """BendVLM for `attribute` (or several, removed jointly: every attribute's subspace in step 1, every
    attribute's groups in step 2), one checkpoint per neighbourhood size.

    Args:
        original: the CLIP checkpoint (folder or Hub id).
        output_dir: checkpoints go to `output_dir/bendvlm-neighbors=<k>`.
        reference: an attribute-labelled image set (`AttributeGallery`, e.g. FairFace train or the world's
            train draw); its embeddings are stored in the checkpoint.
        neighbors: reference images per value that define its local mean (default: 100).
        prompts_file: the attribute prompts file (default: the shipped `attribute_prompts.yaml`); it must
            name every value of the reference set.
    """
    start = time.perf_counter()
    neighbors = list(neighbors or DEFAULT_NEIGHBORS)
    if any(int(count) < 1 for count in neighbors):
        raise MethodError(f"bendvlm: neighbors must be >= 1, got {neighbors}")
    names = attribute_list(attribute, "bendvlm")
    kept, values, labels = joint_reference_labels(reference, names)
    if not len(kept):
        raise MethodError(f"bendvlm: no image of the reference set {reference.name!r} is labelled for every attribute "
                          f"{names}")
    prompt_sets = [load_attribute_prompts(name, prompts_file, value_names) for name, value_names in zip(names, values)]
    prompts = prompt_sets[0] if len(prompt_sets) == 1 else prompt_sets
    output_dir = Path(output_dir)
    for count in neighbors:
        check_output_folder(output_dir / f"bendvlm-neighbors={int(count)}")
    engine = embedding_engine(original, embedding_config)
    embeddings = np.asarray(engine.embed_images(reference.images, reference.fingerprint), dtype=np.float64)[kept]
    # Renormalized: the engine may store float16; the model uses the stored reference as unit-norm.
    embeddings = (embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)).astype(np.float32)
    prompt_embeddings = np.stack([engine.embed_texts(list(attribute_prompts.prototype_prompts[value])).mean(axis=0)
                                  for attribute_prompts in prompt_sets for value in attribute_prompts.values])
    prompt_embeddings /= np.linalg.norm(prompt_embeddings, axis=1, keepdims=True)
    fitted_on = {"reference": reference.name, "source": getattr(reference, "source", ""),
                 "reference_size": int(len(kept)), "model": str(original)}
    fits = [BendVLMFit(prompts, embeddings, labels, prompt_embeddings, int(count), fitted_on) for count in neighbors]
    loaded = load_clip(original)
    seconds = time.perf_counter() - start
    return [MethodCheckpoint(name=fit.name, method="bendvlm", path=save_bendvlm(original, fit, output_dir / fit.name, loaded),
                             settings=fit.settings, swept="neighbors", fit_seconds=seconds) for fit in fits]
