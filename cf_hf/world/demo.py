"""`cf-hf demo`: the whole method on the embedded professions world, on a CPU, measured.

```bash
cf-hf demo --output_dir outputs/demo            # the full demo (3 seeds)
cf-hf demo --output_dir outputs/demo --seeds 1  # one seed (the timing target: <= 10 min, 2 cores)
cf-hf demo --quick --output_dir /tmp/demo       # the test suite's smoke run (<= 60 s)
```

Stages, each through the public API the real pipeline uses:

1. the world: a biased web corpus (`corpus`) and the evaluation galleries (`galleries`);
2. the "original CLIP": a tiny `CLIPModel` pretrained from scratch on the corpus (`pretrain`);
3. per seed: the counterfactual dataset made by `cf_hf.generation.generate` with the world's
   components and exported by `dataset_builder.export_dataset` (a folder `load_dataset` reads);
   fine-tuning with the counterfactual loss (`cf_hf.training.train`); the WiSE-FT α sweep
   (`cf_hf.interpolation.interpolate_sweep`); the ablations (β_cf = 0; unbalanced
   counterfactuals; fine-tuning on a same-size sample of the biased corpus);
4. evaluation of every model with `cf_hf.evaluation.evaluate_models` — fairness (MaxSkew, MinSkew,
   NDKL per attribute) on the world's FairFace, zero-shot accuracy on the world's ImageNet, R@5
   on the world's Flickr — and the random-ranking floor;
5. `results.json` (mean over seeds; std alongside), `report.md`, plots, model cards (one README.md
   per CF_α checkpoint of the first seed).

The original model is pretrained once (its seed is part of the world); the seeds vary the
counterfactual data, the fine-tuning and the ablations, which is where runs differ.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from cf_hf.evaluation.results import FAIRNESS_METRICS, ORIGINAL, RESULTS_FILE, alpha_key, write_results

from . import corpus as corpus_module
from . import galleries, render
from .corpus import ATTRIBUTES, CorpusConfig
from .pretrain import PretrainConfig, world_clip_spec

WORLD_DIR = Path(__file__).resolve().parent
# The targets of the demo (issue 7): reductions and downstream tolerance, as fractions.
TARGET_REDUCTION = 0.60
DOWNSTREAM_TOLERANCE = 0.01
ABLATION_NAMES = {
    "beta_cf=0": "CLIP loss only (β_cf = 0) on the counterfactual data",
    "unbalanced": "unbalanced counterfactuals: appearances drawn from the web corpus's biased distribution",
    "biased_corpus": "fine-tuning on a same-size sample of the biased web corpus (CLIP loss)",
}


@dataclass
class DemoConfig:
    """Every setting of the demo; `full()` and `quick()` are the two presets."""

    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    # The counterfactual dataset (cf_hf.generation with the world's components).
    # Many varied base images with half the grid each (cells balanced over consecutive bases)
    # kept R@5 where few bases with the whole grid lost 5 points (measured, same steps).
    captions_per_concept: int = 12
    decorators_per_caption: int = 8
    appearances_per_base: int | None = 8  # None: all 16 cells of the world's grid
    # Fine-tuning (cf_hf.training).
    finetune_steps: int = 600
    batch_size: int = 64
    # 16 groups of 4 per batch rather than 8 of 8: more scenes per batch kept R@5 at α = 1
    # (-0.1 vs -1.6 points, similar reductions; measured, one seed, learning rate 8e-4).
    group_size: int = 4
    # 1.2e-3 rather than 8e-4: on the validation galleries (3 seeds, α = 0.9) the gender MaxSkew cut
    # rose from 57% to 72% with R@5 -0.1 instead of +1.1 points; 1.6e-3 cut little more and lost
    # R@5 (-1.1 points). Chosen on validation, not on the reported test galleries.
    learning_rate: float = 1.2e-3
    weight_decay: float = 0.1
    # β_cf = 1 (the library default) traded better than 3: at α = 0.9, similar reductions with R@5
    # -0.4 instead of -1.6 points (measured, one seed).
    beta_cf: float = 1.0
    # The text the model is trained on is the neutral caption followed by the base image's decorators
    # ("a nurse in the hospital, close-up, dim light, grainy photo"): with the bare neutral captions
    # the text tower forgot the words for framing, lighting and camera and R@5 fell 4.9 points
    # (measured, α = 1, 600 steps at 3e-4); with them it fell 0.2. The bias sits in the image
    # tower: freezing the text tower let a larger learning rate reach larger reductions.
    caption_decorators: bool = True
    freeze_text: bool = True
    # Interpolation and model selection.
    alphas: tuple[float, ...] = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0)
    downstream_tolerance: float = DOWNSTREAM_TOLERANCE
    # Evaluation sets (seeds fixed and disjoint from the corpus's).
    fairface_per_cell: int = 128
    imagenet_per_class: int = 128
    flickr_images: int = 512
    # The validation sets that choose α are the test sets' sizes; R@5 there is the mean over several
    # Flickr draws of `flickr_images` each: differences of about one point decide α, and on one
    # draw they varied by ~2 points between draws (measured: α = 1, -0.7 vs -2.9 points). One
    # larger gallery would measure another quantity (R@5 falls with more distractors).
    validation_flickr_draws: int = 4
    fairness_k: int = 100
    random_floor_queries: int = 64
    # Repetitions and ablations.
    seeds: int = 3
    ablations: bool = True

    @classmethod
    def full(cls) -> DemoConfig:
        return cls()

    @classmethod
    def quick(cls) -> DemoConfig:
        """A smoke run for the tests: small everything, one seed, no ablations (<= 60 s on 2 cores)."""
        spec = replace(world_clip_spec(), vision_width=64, vision_layers=2, text_width=32, projection_dim=32)
        return cls(
            corpus=CorpusConfig(size=3000),
            pretrain=PretrainConfig(steps=250, batch_size=64, learning_rate=2e-3, warmup_steps=25, spec=spec),
            captions_per_concept=2,
            decorators_per_caption=3,
            appearances_per_base=8,
            finetune_steps=60,
            batch_size=32,
            group_size=4,
            learning_rate=2e-4,
            alphas=(0.0, 0.5, 1.0),
            fairface_per_cell=16,
            imagenet_per_class=24,
            flickr_images=96,
            validation_flickr_draws=2,
            fairness_k=50,
            random_floor_queries=16,
            seeds=1,
            ablations=False,
        )


class _Progress:
    """One line per stage with the elapsed time: the demo's progress display."""

    def __init__(self, total_stages: int, quiet: bool = False):
        self.start = time.perf_counter()
        self.total = total_stages
        self.done = 0
        self.quiet = quiet
        self.stage_seconds: dict[str, float] = {}
        self._current: tuple[str, float] | None = None

    def stage(self, name: str) -> None:
        self._close()
        self.done += 1
        self._current = (name, time.perf_counter())
        self.say(f"[{self.done}/{self.total}] {name}")

    def _close(self) -> None:
        if self._current is not None:
            name, started = self._current
            self.stage_seconds[name] = round(time.perf_counter() - started, 2)
            self._current = None

    def say(self, text: str) -> None:
        if not self.quiet:
            print(f"[{time.perf_counter() - self.start:7.1f} s] {text}", flush=True)

    def finish(self) -> float:
        self._close()
        return time.perf_counter() - self.start


def peak_memory_mb() -> float:
    """Peak resident set size of this process (and any waited-for children), in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0  # Linux reports kilobytes


# ---------------------------------------------------------------------------------------------
# Stages


# Seeds of the galleries: the reported (test) sets, and the validation sets on which α is chosen.
GALLERY_SEEDS = {"test": (101, 102, 103), "validation": (201, 202, 203)}


def _world_sets(config: DemoConfig, split: str = "test"):
    """The evaluation sets of the harness, drawn from the world's galleries: the `test` sets that
    the demo reports, or the `validation` sets (same sizes, other draws) that choose α."""
    size = config.corpus.image_size
    fairface_seed, imagenet_seed, flickr_seed = GALLERY_SEEDS[split]
    suffix = "" if split == "test" else f"_{split}"
    fairface = galleries.fairface(config.fairface_per_cell, seed=fairface_seed, image_size=size)
    imagenet = galleries.imagenet(config.imagenet_per_class, seed=imagenet_seed, image_size=size)
    if split == "test":
        retrieval = galleries.retrieval_set(galleries.flickr(config.flickr_images, seed=flickr_seed, image_size=size))
    else:  # several draws, each the test set's size: R@5 is their mean (see DemoConfig)
        retrieval = [
            galleries.retrieval_set(
                galleries.flickr(config.flickr_images, seed=flickr_seed + 10 * draw, image_size=size),
                name=f"world_flickr{suffix}_{draw}",
            )
            for draw in range(config.validation_flickr_draws)
        ]
    return (
        galleries.attribute_gallery(fairface, name=f"world_fairface{suffix}"),
        retrieval,
        galleries.zero_shot_set(imagenet, name=f"world_imagenet{suffix}"),
    )


def _evaluation_config(config: DemoConfig, quiet: bool):
    from cf_hf.concepts import load_concepts
    from cf_hf.evaluation import EvaluationConfig, FairnessConfig
    from cf_hf.evaluation.embedding import EmbeddingConfig

    fairness = FairnessConfig(
        templates=list(galleries.FAIRNESS_TEMPLATES),
        concepts=load_concepts(WORLD_DIR / "professions.yaml"),
        ks=[config.fairness_k],
        random_floor_queries=config.random_floor_queries,
    )
    return EvaluationConfig(fairness=fairness, embedding=EmbeddingConfig(batch_size=256, progress=not quiet))


def _generation_config(config: DemoConfig, seed: int):
    from cf_hf.concepts import load_attribute_grid, load_concepts, load_decorators
    from cf_hf.generation import GenerationConfig

    return GenerationConfig(
        concepts=load_concepts(WORLD_DIR / "professions.yaml"),
        attribute_grid=load_attribute_grid(WORLD_DIR / "attribute_grid.yaml"),
        decorators=load_decorators(WORLD_DIR / "decorators.yaml"),
        captions_per_concept=config.captions_per_concept,
        decorators_per_caption=config.decorators_per_caption,
        appearances_per_base=config.appearances_per_base,
        seed=seed,
        shard_size=16,
        text_to_image_batch_size=16,
        segmentation_batch_size=16,
        inpainting_batch_size=64,
    )


def make_counterfactual_dataset(config: DemoConfig, seed: int, run_dir: Path, dataset_dir: Path, quiet: bool):
    """`cf_hf.generation.generate` with the world's components, exported as a dataset folder."""
    from cf_hf.generation import generate
    from dataset_builder import export_dataset

    from .components import WorldCaptionWriter, WorldInpainter, WorldSegmenter, WorldTextToImage

    report = generate(
        _generation_config(config, seed),
        caption_writer=WorldCaptionWriter(),
        text_to_image=WorldTextToImage(image_size=config.corpus.image_size),
        segmenter=WorldSegmenter(),
        inpainter=WorldInpainter(),
        output_dir=run_dir,
        show_progress=not quiet,
    )
    if not report.complete:
        raise RuntimeError(
            f"the counterfactual generation in {run_dir} did not complete:\n{report.summary()}"
        )
    export_dataset(run_dir, dataset_dir, test_size=0.0, overwrite=True)
    return report


def _decorator_columns() -> tuple[str, ...]:
    """The counterfactual dataset's decorator columns, in the order of the world's decorators file."""
    from cf_hf.concepts import load_decorators
    from cf_hf.generation.orchestration import DECORATOR_PREFIX

    return tuple(DECORATOR_PREFIX + name for name in load_decorators(WORLD_DIR / "decorators.yaml"))


def _training_arguments(config: DemoConfig, output_dir: Path, seed: int, quiet: bool, **overrides):
    from cf_hf.training import CounterfactualTrainingArguments

    values = dict(
        output_dir=str(output_dir),
        max_steps=config.finetune_steps,
        per_device_train_batch_size=config.batch_size,
        group_size=config.group_size,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=max(1, config.finetune_steps // 10),
        lr_scheduler_type="cosine",
        beta_cf=config.beta_cf,
        logging_steps=max(1, config.finetune_steps // 5),
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=seed,
        data_seed=seed,
        # One worker decodes and collates the next batch while the step runs (measured: 8% faster).
        dataloader_num_workers=1,
        dataloader_persistent_workers=True,
        disable_tqdm=quiet,
        caption_suffix_columns=list(_decorator_columns()) if config.caption_decorators else [],
        freeze_text=config.freeze_text,
    )
    values.update(overrides)
    return CounterfactualTrainingArguments(**values)


def fine_tune(
    config: DemoConfig, original_dir: Path, dataset, output_dir: Path, seed: int, quiet: bool, **overrides
) -> Path:
    """`cf_hf.training.train` from the original checkpoint; returns the fine-tuned checkpoint folder."""
    from cf_hf.training import train

    args = _training_arguments(config, output_dir, seed, quiet, **overrides)
    return Path(train(str(original_dir), dataset, args))


def unbalanced_dataset(dataset, seed: int, stereotype_probability: dict[str, float]):
    """The counterfactual dataset with every counterfactual repainted with an appearance drawn at
    random from the web corpus's biased distribution for its profession (same bases, captions,
    groups and size): the "unbalanced counterfactuals" ablation."""
    import datasets as hf_datasets
    from PIL import Image as PILImage

    from cf_hf.generation.interfaces import InpaintRequest

    from .components import WorldInpainter, WorldSegmenter

    segmenter, inpainter = WorldSegmenter(), WorldInpainter()
    rng = np.random.default_rng(seed)
    decorator_columns = [name for name in _decorator_columns() if name in dataset.column_names]
    rows = dataset.select_columns(["image", "caption", "concept", "group_id", "is_base", *decorator_columns])
    concept_feature = rows.features["concept"]
    concept_name = concept_feature.int2str if isinstance(concept_feature, hf_datasets.ClassLabel) else str
    bases = {row["group_id"]: row["image"] for row in rows if row["is_base"]}
    masks = {group: segmenter([image])[0] for group, image in bases.items()}
    images, captions, group_ids, values = [], [], [], {name: [] for name in (*ATTRIBUTES, *decorator_columns)}
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
        for name in decorator_columns:
            values[name].append(row[name])
    features = hf_datasets.Features(
        {"image": hf_datasets.Image(), "caption": hf_datasets.Value("string"), "group_id": hf_datasets.Value("string"),
         **{name: hf_datasets.Value("string") for name in (*ATTRIBUTES, *decorator_columns)}}
    )  # fmt: skip
    return hf_datasets.Dataset.from_dict(
        {"image": images, "caption": captions, "group_id": group_ids, **values}, features=features
    )


def corpus_sample_dataset(config: DemoConfig, size: int, seed: int):
    """`size` fresh pairs from the biased web corpus (same distribution as pretraining), each its own group."""
    import datasets as hf_datasets
    from PIL import Image as PILImage

    sample = corpus_module.make_corpus(replace(config.corpus, size=size, seed=10_000 + seed))
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


# ---------------------------------------------------------------------------------------------
# Numbers


def headline(entry: dict) -> dict:
    """The flat numbers of one model entry of `evaluate_models`: per attribute MaxSkew, MinSkew and
    NDKL (means over queries), zero-shot accuracy, R@5, and the zero-shot accuracy split by
    stereotype and by prop visibility."""
    numbers = {
        name: {metric: float(entry[name][metric]) for metric in FAIRNESS_METRICS} for name in ATTRIBUTES
    }
    numbers["zero_shot_accuracy"] = float(entry["zero_shot_accuracy"])
    numbers["recall_at_5"] = float(entry["recall_at_5"])
    groups = next(iter(entry["zero_shot"].values())).get("groups", {})
    numbers["zero_shot_groups"] = {
        f"{attribute}={value}": float(accuracy)
        for attribute, by_value in groups.items()
        for value, accuracy in by_value["per_value"].items()
    }
    return numbers


def _flatten(numbers: dict, prefix: str = "") -> dict[str, float]:
    flat = {}
    for key, value in numbers.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        else:
            flat[prefix + key] = float(value)
    return flat


def _unflatten(flat: dict[str, float]) -> dict:
    nested: dict = {}
    for key, value in flat.items():
        *parents, leaf = key.split("/")
        node = nested
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return nested


def mean_and_std(runs: list[dict]) -> tuple[dict, dict]:
    """Mean and (sample, ddof=1; 0 for one run) standard deviation of nested numbers over runs."""
    flats = [_flatten(run) for run in runs]
    keys = flats[0].keys()
    means = {key: float(np.mean([flat[key] for flat in flats])) for key in keys}
    stds = {
        key: float(np.std([flat[key] for flat in flats], ddof=1)) if len(flats) > 1 else 0.0 for key in keys
    }
    return _unflatten(means), _unflatten(stds)


def reductions(original: dict, model: dict) -> dict:
    """Relative reduction (fraction; positive = fairer) of MaxSkew, |MinSkew| and NDKL per attribute,
    and the change of the downstream numbers in points of fraction (model - original)."""
    result = {}
    for name in ATTRIBUTES:
        result[name] = {}
        for metric in FAIRNESS_METRICS:
            before, after = abs(original[name][metric]), abs(model[name][metric])
            result[name][metric] = (before - after) / before if before > 0 else 0.0
    result["zero_shot_accuracy_change"] = model["zero_shot_accuracy"] - original["zero_shot_accuracy"]
    result["recall_at_5_change"] = model["recall_at_5"] - original["recall_at_5"]
    return result


def choose_alpha(alphas, original: dict, sweep: dict[str, dict], tolerance: float) -> float:
    """The α with the largest mean reduction of MaxSkew and NDKL over attributes among those whose
    zero-shot accuracy and R@5 stay within `tolerance` of the original (means over seeds); 0 if
    none does."""
    best_alpha, best_score = 0.0, -math.inf
    for alpha in alphas:
        model = sweep[alpha_key(alpha)]
        change = reductions(original, model)
        if change["zero_shot_accuracy_change"] < -tolerance or change["recall_at_5_change"] < -tolerance:
            continue
        score = np.mean([change[name][metric] for name in ATTRIBUTES for metric in ("max_skew", "ndkl")])
        if score > best_score + 1e-12:
            best_alpha, best_score = float(alpha), score
    return best_alpha


# ---------------------------------------------------------------------------------------------
# The run


def run_demo(config: DemoConfig, output_dir: str | Path, quiet: bool = False) -> dict:
    """Run every stage (module docstring); write results.json, report.md, plots and model cards
    to `output_dir`; return the results."""
    import torch

    from cf_hf.evaluation import evaluate_models, write_report
    from cf_hf.interpolation import interpolate_sweep

    from .pretrain import pretrain_original_clip

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    stages = 3 + config.seeds * (3 + (1 if config.ablations else 0)) + 1
    progress = _Progress(stages, quiet)

    progress.stage(f"the world: biased web corpus ({config.corpus.size} pairs) and evaluation galleries")
    corpus = corpus_module.make_corpus(config.corpus)
    fairface, flickr, imagenet = _world_sets(config)
    validation_sets = _world_sets(config, "validation")
    evaluation_config = _evaluation_config(config, quiet)

    progress.stage(f"pretraining the original CLIP from scratch ({config.pretrain.steps} steps)")
    original_dir = output_dir / "original"
    torch.manual_seed(config.pretrain.seed)
    pretrain_original_clip(
        corpus, config.pretrain, output_dir=original_dir, log=None if quiet else progress.say
    )
    del corpus

    progress.stage("evaluating the original CLIP and the random-ranking floor")
    original_results = evaluate_models({ORIGINAL: original_dir}, fairness=fairface, retrieval=flickr,
                                       zero_shot=imagenet, config=evaluation_config)  # fmt: skip
    original = headline(original_results["models"][ORIGINAL])
    floor = original_results["protocol"]["fairness"]["galleries"][fairface.name]["random_floor"]
    validation = {"original": _validation_numbers({ORIGINAL: original_dir}, validation_sets, evaluation_config)[ORIGINAL],
                  "per_seed": []}  # fmt: skip

    per_seed: list[dict] = []
    first_seed_results = None
    first_sweep_dir = None
    generation_summary = {}
    for seed in range(config.seeds):
        seed_dir = output_dir / f"seed-{seed}"
        progress.stage(f"seed {seed}: counterfactual dataset (cf_hf.generation with the world's components)")
        dataset_dir = seed_dir / "dataset"
        report = make_counterfactual_dataset(config, seed, seed_dir / "generation", dataset_dir, quiet)
        generation_summary[f"seed-{seed}"] = {"base_images": report.base_images, "counterfactuals": report.counterfactuals,
                                              "stage_seconds": {k: round(v, 2) for k, v in report.stage_seconds.items()}}  # fmt: skip
        import datasets as hf_datasets

        # `load_dataset(folder)`, as a user would; its Arrow cache stays inside the run's folder.
        dataset = hf_datasets.load_dataset(
            str(dataset_dir), split="train", cache_dir=str(seed_dir / "hf_cache")
        )

        progress.stage(
            f"seed {seed}: fine-tuning with the counterfactual loss ({config.finetune_steps} steps)"
        )
        finetuned_dir = fine_tune(config, original_dir, dataset, seed_dir / "finetuned", seed, quiet)

        progress.stage(f"seed {seed}: WiSE-FT sweep over α = {', '.join(f'{a:g}' for a in config.alphas)}")
        sweep_dir = seed_dir / "sweep"
        # A fresh sweep: one left by an earlier run (other settings) must not add its α's to this one.
        shutil.rmtree(sweep_dir, ignore_errors=True)
        sweep = interpolate_sweep(original_dir, finetuned_dir, config.alphas, sweep_dir)
        models = {alpha_key(entry["alpha"]): sweep_dir / entry["path"] for entry in sweep["alphas"]}
        progress.say(f"seed {seed}: evaluating the sweep on the validation sets (they choose α)")
        validation["per_seed"].append(_validation_numbers(models, validation_sets, evaluation_config))
        if config.ablations:
            progress.stage(f"seed {seed}: ablations (β_cf = 0, unbalanced counterfactuals, biased corpus)")
            ablation_dir = seed_dir / "ablations"
            models["beta_cf=0"] = fine_tune(
                config, original_dir, dataset, ablation_dir / "beta_cf_0", seed, quiet, beta_cf=0.0
            )
            unbalanced = unbalanced_dataset(dataset, seed, config.corpus.stereotype_probability)
            models["unbalanced"] = fine_tune(
                config, original_dir, unbalanced, ablation_dir / "unbalanced", seed, quiet
            )
            sample = corpus_sample_dataset(config, len(dataset), seed)
            models["biased_corpus"] = fine_tune(config, original_dir, sample, ablation_dir / "biased_corpus", seed, quiet,
                                                beta_cf=0.0, group_size=2, clip_group_positives=False,
                                                caption_suffix_columns=[])  # web captions name their details  # fmt: skip
        progress.say(f"seed {seed}: evaluating {len(models)} models")
        results = evaluate_models(models, fairness=fairface, retrieval=flickr, zero_shot=imagenet,
                                  config=evaluation_config,
                                  alphas={alpha_key(alpha): float(alpha) for alpha in config.alphas})  # fmt: skip
        per_seed.append({name: headline(entry) for name, entry in results["models"].items()})
        if first_seed_results is None:
            results["models"] = {ORIGINAL: original_results["models"][ORIGINAL], **results["models"]}
            first_seed_results, first_sweep_dir = results, sweep_dir

    progress.stage("results, report, plots and model cards")
    results = summarise(config, original, floor, per_seed, validation)
    # Every model was evaluated with the original's protocol (one config, the same galleries).
    results["protocol"] = original_results["protocol"]
    for entry in results["models"].values():
        entry["fairness_k"] = original_results["models"][ORIGINAL]["fairness_k"]
    results["generation"] = generation_summary
    write_report(first_seed_results, output_dir / "evaluation")
    plots = write_plots(results, output_dir / "plots")
    write_model_cards(results, config, original_dir, first_sweep_dir)
    wall = progress.finish()
    results["wall_time_seconds"] = round(wall, 1)
    results["peak_memory_mb"] = round(peak_memory_mb(), 1)
    results["stage_seconds"] = progress.stage_seconds
    write_results(results, output_dir / RESULTS_FILE)
    (output_dir / "report.md").write_text(render_report(results, plots, output_dir), encoding="utf-8")
    return results


def _validation_numbers(models: dict, sets, evaluation_config) -> dict:
    """`headline` numbers of `models` on the validation sets (see `_world_sets`), R@5 the mean over
    the Flickr draws."""
    from cf_hf.evaluation import evaluate_models

    fairface, flickr, imagenet = sets
    results = evaluate_models(models, fairness=fairface, retrieval=flickr, zero_shot=imagenet, config=evaluation_config)
    numbers = {}
    for name, entry in results["models"].items():
        numbers[name] = headline(entry)
        recalls = [float(draw["text_to_image"]["5"]) for draw in entry["retrieval"].values()]
        numbers[name]["recall_at_5"] = float(np.mean(recalls))
    return numbers


def summarise(
    config: DemoConfig, original: dict, floor: dict, per_seed: list[dict], validation: dict | None = None
) -> dict:
    """results.json (the schema of `cf_hf.evaluation.results`): `models` (the original; the sweep,
    each with its `alpha`; the ablations: means over seeds), their std, reductions, chosen α, targets.

    α is chosen on `validation` ({"original": numbers, "per_seed": [{alpha=<α>: numbers}]}, the
    validation sets' numbers) when given, otherwise on the reported numbers themselves.
    """
    names = list(per_seed[0])
    means, stds, changes = {}, {}, {}
    for name in names:
        means[name], stds[name] = mean_and_std([run[name] for run in per_seed])
        change_means, change_stds = mean_and_std([reductions(original, run[name]) for run in per_seed])
        changes[name] = {"mean": change_means, "std": change_stds}
    if validation is not None:
        selection_original = validation["original"]
        selection_sweep = {name: mean_and_std([run[name] for run in validation["per_seed"]])[0]
                           for name in validation["per_seed"][0]}  # fmt: skip
    else:
        selection_original = original
        selection_sweep = {alpha_key(alpha): means[alpha_key(alpha)] for alpha in config.alphas}
    chosen = choose_alpha(config.alphas, selection_original, selection_sweep, config.downstream_tolerance)
    chosen_change = changes[alpha_key(chosen)]["mean"]
    targets = {
        name: {
            metric: bool(chosen_change[name][metric] >= TARGET_REDUCTION) for metric in ("max_skew", "ndkl")
        }
        for name in ATTRIBUTES
    }
    targets["zero_shot_accuracy_within_1_point"] = bool(
        chosen_change["zero_shot_accuracy_change"] >= -DOWNSTREAM_TOLERANCE
    )
    targets["recall_at_5_within_1_point"] = bool(chosen_change["recall_at_5_change"] >= -DOWNSTREAM_TOLERANCE)
    models = {ORIGINAL: original}
    models.update({alpha_key(alpha): {**means[alpha_key(alpha)], "alpha": float(alpha)} for alpha in config.alphas})
    models.update({name: means[name] for name in names if name in ABLATION_NAMES})
    results = {"models": models, "chosen_alpha": chosen}
    results["alpha_selection"] = {
        "sets": "validation" if validation is not None else "test",
        "rule": "largest mean reduction of MaxSkew and NDKL over attributes with zero-shot accuracy and R@5 "
        f"each within {config.downstream_tolerance:g} of the original (means over seeds)",
        "reductions": {name: reductions(selection_original, numbers) for name, numbers in selection_sweep.items()},
    }
    results["ablations"] = {name: text for name, text in ABLATION_NAMES.items() if name in names}
    results["std"] = {name: stds[name] for name in names}
    results["reduction"] = changes
    results["random_floor"] = {name: floor[name]["equal_opportunity"] for name in ATTRIBUTES if name in floor}
    results["targets"] = targets
    results["seeds"] = config.seeds
    results["per_seed"] = per_seed
    results["config"] = json.loads(json.dumps(asdict(config), default=str))
    return results


# ---------------------------------------------------------------------------------------------
# Report


def _pm(mean: float, std: float, digits: int = 3) -> str:
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def summary_rows(results: dict) -> list[list[str]]:
    """The headline table: original, chosen CF_α, floor; MaxSkew / NDKL per attribute, accuracy, R@5."""
    chosen = alpha_key(results["chosen_alpha"])
    rows = []
    for label, key in ((ORIGINAL, ORIGINAL), (f"CF_α (α = {results['chosen_alpha']:g})", chosen)):
        entry, std = results["models"][key], results["std"].get(key, {})
        row = [label]
        for name in ATTRIBUTES:
            for metric in ("max_skew", "ndkl"):
                row.append(_pm(entry[name][metric], std.get(name, {}).get(metric, 0.0)))
        for metric in ("zero_shot_accuracy", "recall_at_5"):
            row.append(_pm(100 * entry[metric], 100 * std.get(metric, 0.0), 1))
        rows.append(row)
    change = results["reduction"][chosen]["mean"]
    change_std = results["reduction"][chosen]["std"]
    row = ["reduction / change"]
    for name in ATTRIBUTES:
        for metric in ("max_skew", "ndkl"):
            row.append(f"{100 * change[name][metric]:.0f}% ± {100 * change_std[name][metric]:.0f}")
    row += [
        f"{100 * change['zero_shot_accuracy_change']:+.1f} pt",
        f"{100 * change['recall_at_5_change']:+.1f} pt",
    ]
    rows.append(row)
    floor = results["random_floor"]
    rows.append(
        ["random ranking (floor)"]
        + [f"{floor[name][metric]:.3f}" for name in ATTRIBUTES for metric in ("max_skew", "ndkl")]
        + ["", ""]
    )
    return rows


def summary_header() -> list[str]:
    header = ["model"]
    for name in ATTRIBUTES:
        header += [f"MaxSkew {name}", f"NDKL {name}"]
    return header + ["zero-shot acc. (%)", "R@5 (%)"]


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _model_rows(results: dict, names: list[str]) -> list[list[str]]:
    rows = []
    for name in names:
        entry = results["models"][name]
        std = results["std"].get(name, {})
        row = [name]
        for attribute in ATTRIBUTES:
            for metric in FAIRNESS_METRICS:
                row.append(_pm(entry[attribute][metric], std.get(attribute, {}).get(metric, 0.0)))
        row += [_pm(100 * entry[m], 100 * std.get(m, 0.0), 1) for m in ("zero_shot_accuracy", "recall_at_5")]
        groups = entry["zero_shot_groups"]
        row += [f"{100 * groups.get(key, float('nan')):.1f}" for key in
                ("stereotype=stereotypical", "stereotype=anti-stereotypical", "prop=hidden")]  # fmt: skip
        rows.append(row)
    return rows


def _model_header() -> list[str]:
    header = ["model"]
    for attribute in ATTRIBUTES:
        header += [f"{metric} {attribute}" for metric in ("MaxSkew", "MinSkew", "NDKL")]
    return header + [
        "zero-shot (%)",
        "R@5 (%)",
        "acc. stereo. (%)",
        "acc. anti-stereo. (%)",
        "acc. prop hidden (%)",
    ]


def render_report(results: dict, plots: list[Path], output_dir: Path) -> str:
    """report.md: the headline table, the targets, the sweep, the ablations, the protocol."""
    config = results["config"]
    targets = results["targets"]
    lines = [
        "# cf-hf demo: counterfactual fine-tuning on the professions world",
        "",
        f"Measured by `cf-hf demo` ({results['seeds']} seed{'s' if results['seeds'] != 1 else ''}; "
        f"mean ± std over seeds). Wall time {results['wall_time_seconds']:.0f} s, "
        f"peak memory {results['peak_memory_mb']:.0f} MB.",
        "",
        "## Headline",
        "",
        _markdown_table(summary_header(), summary_rows(results)),
        "",
        f"Fairness at k = {results['models'][ORIGINAL]['fairness_k']} on the world's FairFace (mean over "
        f"{len(galleries.FAIRNESS_TEMPLATES)} templates x {len(render.PROFESSIONS)} professions; lower is fairer); "
        "zero-shot accuracy on the world's ImageNet; text-to-image R@5 on the world's Flickr.",
        "",
        "## Targets",
        "",
    ]
    for name in ATTRIBUTES:
        for metric in ("max_skew", "ndkl"):
            value = results["reduction"][alpha_key(results["chosen_alpha"])]["mean"][name][metric]
            status = "met" if targets[name][metric] else "NOT met"
            lines.append(f"- {metric} {name} reduced by ≥ {TARGET_REDUCTION:.0%}: {status} ({value:.0%})")
    lines.append(
        f"- zero-shot accuracy within 1 point: {'met' if targets['zero_shot_accuracy_within_1_point'] else 'NOT met'}"
    )
    lines.append(f"- R@5 within 1 point: {'met' if targets['recall_at_5_within_1_point'] else 'NOT met'}")
    sweep_names = [alpha_key(alpha) for alpha in config["alphas"]]
    lines += [
        "",
        "## The α sweep (WiSE-FT) and the ablations",
        "",
        f"The chosen α is the one with the largest mean MaxSkew and NDKL reduction whose zero-shot "
        f"accuracy and R@5 stay within {config['downstream_tolerance'] * 100:g} point of the original, "
        + (
            "measured on validation galleries (other draws of the same world, seeds "
            f"{', '.join(map(str, GALLERY_SEEDS['validation']))}; R@5 the mean over "
            f"{config['validation_flickr_draws']} Flickr draws); the tables report the test galleries."
            if results.get("alpha_selection", {}).get("sets") == "validation"
            else "measured on the reported galleries themselves."
        ),
        "",
        _markdown_table(
            _model_header(), _model_rows(results, [ORIGINAL] + sweep_names + list(results["ablations"]))
        ),
        "",
    ]
    for name, text in ABLATION_NAMES.items():
        if name in results["ablations"]:
            lines.append(f"- `{name}`: {text}.")
    lines += ["", "## Plots", ""]
    lines += [f"![{path.stem}]({path.relative_to(output_dir).as_posix()})" for path in plots]
    lines += [
        "",
        "## What ran",
        "",
        f"- Biased web corpus: {config['corpus']['size']} captioned scenes; each attribute of a profession's person "
        f"takes the profession's stereotyped value with probability {config['corpus']['stereotype_probability']}; "
        f"{config['corpus']['portrait_fraction']:.0%} portraits on the plain backdrop.",
        f"- Original CLIP: pretrained from scratch for {config['pretrain']['steps']} steps at batch "
        f"{config['pretrain']['batch_size']}.",
        f"- Counterfactual data: {config['captions_per_concept']} captions x {config['decorators_per_caption']} "
        f"decorator draws per profession, {config['appearances_per_base'] or 16} grid cells per base image "
        "(cf_hf.generation.generate with the world's components; dataset exported by dataset_builder).",
        f"- Fine-tuning: {config['finetune_steps']} steps, batch {config['batch_size']} "
        f"({config['group_size']} images per group), learning rate {config['learning_rate']}, β_cf = {config['beta_cf']}.",
        "- Per-stage wall time (s): "
        + ", ".join(f"{name}: {seconds:.0f}" for name, seconds in results["stage_seconds"].items()),
        "- Full evaluation report of the first seed: `evaluation/report.md`.",
        "",
    ]
    return "\n".join(lines)


def write_plots(results: dict, plot_dir: Path) -> list[Path]:
    """The α sweep (fairness and downstream vs α) and the ablation bars, as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot_dir.mkdir(parents=True, exist_ok=True)
    alphas = sorted(entry["alpha"] for entry in results["models"].values() if "alpha" in entry)
    keys = [alpha_key(alpha) for alpha in alphas]
    paths = []
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for axis, metric in zip(axes[:2], ("max_skew", "ndkl")):
        for name in ATTRIBUTES:
            means = [results["models"][key][name][metric] for key in keys]
            stds = [results["std"][key][name][metric] for key in keys]
            line = axis.errorbar(alphas, means, yerr=stds, marker="o", capsize=3, label=name)
            floor = results["random_floor"].get(name, {}).get(metric)
            if floor is not None:
                axis.axhline(floor, linestyle=":", color=line[0].get_color())
        axis.set_xlabel("α")
        axis.set_title(f"{'MaxSkew' if metric == 'max_skew' else 'NDKL'}@k (dotted: random floor)")
        axis.legend()
    for metric, label in (("zero_shot_accuracy", "zero-shot accuracy"), ("recall_at_5", "R@5")):
        means = [100 * results["models"][key][metric] for key in keys]
        stds = [100 * results["std"][key][metric] for key in keys]
        axes[2].errorbar(alphas, means, yerr=stds, marker="o", capsize=3, label=label)
    axes[2].set_xlabel("α")
    axes[2].set_title("downstream (%)")
    axes[2].legend()
    figure.tight_layout()
    path = plot_dir / "alpha_sweep.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    paths.append(path)

    names = [ORIGINAL, alpha_key(results["chosen_alpha"])] + list(results["ablations"])
    entries = [results["models"][name] for name in names]
    figure, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    width = 0.8 / len(names)
    for axis, metric in zip(axes, ("max_skew", "ndkl")):
        for index, (name, entry) in enumerate(zip(names, entries)):
            positions = np.arange(len(ATTRIBUTES)) + index * width
            axis.bar(positions, [entry[attribute][metric] for attribute in ATTRIBUTES], width, label=name)
        axis.set_xticks(np.arange(len(ATTRIBUTES)) + width * (len(names) - 1) / 2, ATTRIBUTES)
        axis.set_title("MaxSkew@k" if metric == "max_skew" else "NDKL@k")
        axis.legend(fontsize=8)
    figure.tight_layout()
    path = plot_dir / "models.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    paths.append(path)
    return paths


def write_model_cards(results: dict, config: DemoConfig, original_dir: Path, sweep_dir: Path) -> None:
    """README.md in every CF_α checkpoint folder of the first seed (numbers: means over seeds)."""
    from cf_hf.interpolation import read_sweep
    from model_card import render_model_card

    sweep = read_sweep(sweep_dir)
    training = {
        "data": "counterfactual dataset of the professions world (cf-hf demo)",
        "steps": config.finetune_steps,
        "batch size": config.batch_size,
        "images per group": config.group_size,
        "learning rate": config.learning_rate,
        "beta_cf": config.beta_cf,
        "seeds averaged in the numbers": config.seeds,
    }
    world_sets = {
        "fairness": {"name": "professions world FairFace (cf_hf.world)", "type": "cf_hf-world-fairface"},
        "zero_shot_accuracy": {
            "name": "professions world ImageNet (cf_hf.world)",
            "type": "cf_hf-world-imagenet",
        },
        "recall_at_5": {"name": "professions world Flickr (cf_hf.world)", "type": "cf_hf-world-flickr"},
    }
    for alpha, folder in sweep["checkpoints"].items():
        card = render_model_card(
            alpha=float(alpha),
            # The original's folder relative to this card: it names the model without a machine path.
            base_model=os.path.relpath(original_dir, folder),
            results=results,
            training=training,
            evaluation_datasets=world_sets,
        )
        (Path(folder) / "README.md").write_text(card, encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    """The `cf-hf demo` parser (argparse alone: `--help` prints without importing torch)."""
    parser = argparse.ArgumentParser(
        prog="cf-hf demo",
        description="Run the whole method on the embedded professions world and report the measured numbers. "
        "Options left unset take the preset's value (the full demo, or --quick).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--output_dir", default="outputs/demo", help="where every artefact is written")
    parser.add_argument("--quick", action="store_true", help="a small smoke run (the tests' mode, <= 60 s)")
    parser.add_argument("--seeds", type=int, default=None, help="fine-tuning seeds to average; unset: 3 (--quick: 1)")
    parser.add_argument("--alphas", type=float, nargs="+", default=None,
                        help="the α's of the WiSE-FT sweep, space-separated; unset: the preset's")  # fmt: skip
    parser.add_argument("--no_ablations", action="store_true", help="skip the three ablations")
    parser.add_argument("--finetune_steps", type=int, default=None,
                        help="fine-tuning steps per seed; unset: the preset's")  # fmt: skip
    parser.add_argument("--pretrain_steps", type=int, default=None,
                        help="pretraining steps of the original CLIP; unset: the preset's")  # fmt: skip
    parser.add_argument("--corpus_size", type=int, default=None,
                        help="image-caption pairs of the biased web corpus; unset: the preset's")  # fmt: skip
    parser.add_argument("--stereotype_probability", type=float, default=None,
                        help="the corpus's stereotype probability for every attribute; unset: "
                             f"{corpus_module.DEFAULT_STEREOTYPE_PROBABILITY}")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads; unset: torch's choice")
    parser.add_argument("--quiet", action="store_true", help="print only the final table")
    return parser


def config_from_args(args: argparse.Namespace) -> DemoConfig:
    config = DemoConfig.quick() if args.quick else DemoConfig.full()
    if args.seeds is not None:
        if args.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
        config.seeds = args.seeds
    if args.alphas is not None:
        config.alphas = tuple(args.alphas)
    if args.no_ablations:
        config.ablations = False
    if args.finetune_steps is not None:
        config.finetune_steps = args.finetune_steps
    if args.pretrain_steps is not None:
        config.pretrain.steps = args.pretrain_steps
    if args.corpus_size is not None:
        config.corpus.size = args.corpus_size
    if args.stereotype_probability is not None:
        config.corpus = replace(
            config.corpus, stereotype_probability=dict.fromkeys(ATTRIBUTES, args.stereotype_probability)
        )
    return config


def main(argv: list[str] | None = None) -> int:
    """`cf-hf demo`: run, then print the headline table and where the artefacts are."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as error:
        parser.error(str(error))
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    results = run_demo(config, args.output_dir, quiet=args.quiet)
    header, rows = summary_header(), summary_rows(results)
    print()
    print(_markdown_table(header, rows))
    print()
    print(f"chosen α = {results['chosen_alpha']:g}; wall time {results['wall_time_seconds']:.0f} s; "
          f"peak memory {results['peak_memory_mb']:.0f} MB")  # fmt: skip
    print(
        f"report: {Path(args.output_dir) / 'report.md'}   results: {Path(args.output_dir) / 'results.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
