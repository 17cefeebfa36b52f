"""The ablations (`cf-hf demo --ablations`): what the cut owes to the counterfactual loss, to the
balanced appearances, and to fine-tuning at all. Each fine-tunes with the demo's recipe and steps."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from .. import corpus as corpus_module
from ..corpus import ATTRIBUTES
from .config import DemoConfig

ABLATION_NAMES = {
    "beta_cf=0": "CLIP loss only (β_cf = 0) on the counterfactual data",
    "unbalanced": "unbalanced counterfactuals: appearances drawn from the web corpus's biased distribution",
    "biased_corpus": "fine-tuning on a same-size sample of the biased web corpus (CLIP loss)",
}
# Seeds of the corpus samples of the `biased_corpus` ablation: offset from the web corpus's own.
CORPUS_SAMPLE_SEED_OFFSET = 10_000


def ablation_models(config: DemoConfig, original_dir: Path, dataset, output_dir: Path, seed: int,
                    quiet: bool) -> dict[str, Path]:
    """Fine-tune the three ablations of `ABLATION_NAMES` from the original for `seed`; returns
    name -> checkpoint folder (under `output_dir`)."""
    from .stages import fine_tune

    models = {}
    models["beta_cf=0"] = fine_tune(config, original_dir, dataset, output_dir / "beta_cf_0", seed, quiet, beta_cf=0.0)
    unbalanced = unbalanced_dataset(dataset, seed, config.corpus.stereotype_probability)
    models["unbalanced"] = fine_tune(config, original_dir, unbalanced, output_dir / "unbalanced", seed, quiet)
    sample = corpus_sample_dataset(config, len(dataset), seed)
    models["biased_corpus"] = fine_tune(config, original_dir, sample, output_dir / "biased_corpus", seed, quiet,
                                        beta_cf=0.0, group_size=2, clip_group_positives=False,
                                        caption_suffix_columns=[])  # web captions name their details  # fmt: skip
    return models


def unbalanced_dataset(dataset, seed: int, stereotype_probability: dict[str, float]):
    """The counterfactual dataset with every counterfactual repainted with an appearance drawn at
    random from the web corpus's biased distribution for its profession (same bases, captions,
    groups and size): the "unbalanced counterfactuals" ablation."""
    import datasets as hf_datasets
    from PIL import Image as PILImage

    from cf_hf.generation.interfaces import InpaintRequest

    from ..components import WorldInpainter, WorldSegmenter
    from .stages import decorator_columns

    segmenter, inpainter = WorldSegmenter(), WorldInpainter()
    rng = np.random.default_rng(seed)
    decorators = [name for name in decorator_columns() if name in dataset.column_names]
    rows = dataset.select_columns(["image", "caption", "concept", "group_id", "is_base", *decorators])
    concept_feature = rows.features["concept"]
    concept_name = concept_feature.int2str if isinstance(concept_feature, hf_datasets.ClassLabel) else str
    bases = {row["group_id"]: row["image"] for row in rows if row["is_base"]}
    masks = {group: segmenter([image])[0] for group, image in bases.items()}
    images, captions, group_ids, values = [], [], [], {name: [] for name in (*ATTRIBUTES, *decorators)}
    for row in rows:
        image = row["image"]
        appearance = {name: None for name in ATTRIBUTES}
        if not row["is_base"]:
            concept = concept_name(row["concept"])
            person = corpus_module.biased_person(concept, stereotype_probability, rng)
            appearance = person.as_dict()
            base = bases[row["group_id"]]
            request = InpaintRequest(base, masks[row["group_id"]].astype(np.float32), appearance, "", row["caption"],
                                     concept, int(rng.integers(2**31)))  # fmt: skip
            image = PILImage.fromarray(inpainter.inpaint(request))
        images.append(image)
        captions.append(row["caption"])
        group_ids.append(row["group_id"])
        for name in ATTRIBUTES:
            values[name].append(appearance[name])
        for name in decorators:
            values[name].append(row[name])
    features = hf_datasets.Features(
        {"image": hf_datasets.Image(), "caption": hf_datasets.Value("string"), "group_id": hf_datasets.Value("string"),
         **{name: hf_datasets.Value("string") for name in (*ATTRIBUTES, *decorators)}}
    )  # fmt: skip
    return hf_datasets.Dataset.from_dict(
        {"image": images, "caption": captions, "group_id": group_ids, **values}, features=features
    )


def corpus_sample_dataset(config: DemoConfig, size: int, seed: int):
    """`size` fresh pairs from the biased web corpus (same distribution as pretraining), each its own group."""
    import datasets as hf_datasets
    from PIL import Image as PILImage

    sample = corpus_module.make_corpus(replace(config.corpus, size=size, seed=CORPUS_SAMPLE_SEED_OFFSET + seed))
    features = hf_datasets.Features(
        {
            "image": hf_datasets.Image(),
            "caption": hf_datasets.Value("string"),
            "group_id": hf_datasets.Value("string"),
        }
    )
    return hf_datasets.Dataset.from_dict(
        {
            "image": [PILImage.fromarray(image) for image in sample.images],
            "caption": list(sample.captions),
            # Arbitrary pairs: the group sampler needs groups of two or more; the ablation trains
            # with the CLIP loss only and without same-group positives, so pairing means nothing.
            "group_id": [f"corpus-{index // 2:06d}" for index in range(len(sample))],
        },
        features=features,
    )
