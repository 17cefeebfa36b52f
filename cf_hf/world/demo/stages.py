"""The demo's stages, each through the public API a real run uses: the world's evaluation sets, the
original CLIP (shipped or pretrained), the counterfactual dataset, fine-tuning, and the numbers on
the validation sets."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from .. import galleries, render
from ..corpus import SceneSet
from .config import GALLERY_SEEDS, METHOD_FIT_SEED, DemoConfig
from .statistics import headline

WORLD_DIR = Path(__file__).resolve().parents[1]
# The world's words per attribute value for the methods that read them (closed form, BendVLM).
WORLD_ATTRIBUTE_PROMPTS = WORLD_DIR / "attribute_prompts.yaml"
# Every training-free method of the registry, in the demo's table order (bias alignment trains: it stays
# behind --bias_alignment); tests check it against `cf_hf.methods.training_free_methods()`.
DEMO_TRAINING_FREE_METHODS = ("clip_clip", "biased_prompts", "closed_form", "bendvlm", "sfid", "spd")
# How the run got its original CLIP (results.json: config.original.source).
SHIPPED, PRETRAINED = "shipped", "pretrained"


def world_sets(config: DemoConfig, split: str = "test"):
    """The evaluation sets of the harness, drawn from the world's galleries: the `test` sets that
    the demo reports, or the `validation` sets (same sizes, other draws) that choose α.

    Returns:
        (fairness gallery, retrieval set (test) or list of retrieval sets (validation), zero-shot set)
    """
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


def method_fit_gallery(config: DemoConfig):
    """The labelled people CLIP-clip ranks the embedding dimensions on: another draw of the world's
    FairFace, disjoint from the test and validation galleries (its "train" split)."""
    fairface = galleries.fairface(config.method_fit_per_cell, seed=METHOD_FIT_SEED, image_size=config.corpus.image_size)
    return galleries.attribute_gallery(fairface, name="world_fairface_train")


def fit_methods(config: DemoConfig, original_dir: Path, gallery, output_dir: Path, seed: int, evaluation,
                counterfactual_dataset=None, quiet: bool = True) -> list:
    """CLIP-clip (every `clip_clip_keep`) and biased prompts (every `biased_prompts_lambdas`),
    fitted on the original to remove the world's three attributes at once: `MethodCheckpoint`s; with
    `config.bias_alignment`, the bias-alignment variants too (`fit_bias_alignment`)."""
    from cf_hf.methods import get_method

    from ..corpus import ATTRIBUTES

    checkpoints = get_method("clip_clip").fit(original_dir, output_dir, gallery, list(ATTRIBUTES), config.clip_clip_keep,
                                       seed=seed, embedding_config=evaluation.embedding)
    checkpoints += get_method("biased_prompts").fit(original_dir, output_dir, list(ATTRIBUTES), list(render.PROFESSIONS),
                                             config.biased_prompts_lambdas, WORLD_DIR / "biased_prompts.yaml",
                                             embedding_config=evaluation.embedding)
    checkpoints += fit_attribute_removal_methods(config, original_dir, gallery, output_dir, seed, evaluation)
    if config.bias_alignment:
        checkpoints += fit_bias_alignment(config, original_dir, gallery, output_dir, seed, evaluation,
                                          counterfactual_dataset, quiet)
    return checkpoints


def fit_attribute_removal_methods(config: DemoConfig, original_dir: Path, gallery, output_dir: Path, seed: int,
                                  evaluation) -> list:
    """The training-free methods that remove `config.method_attributes` jointly (the world's three by
    default), fitted on the original: the closed-form projection (every `closed_form_weights`; the world's attribute prompts),
    BendVLM (every `bendvlm_neighbors`; `gallery`, the methods' train draw, is its reference set, the
    world's attribute prompts its words), SFID (every `sfid_prune_counts`) and SPD (every `spd_axes`),
    both fitted on `gallery`: `MethodCheckpoint`s."""
    from cf_hf.methods import get_method

    attribute, embedding = list(config.method_attributes), evaluation.embedding
    checkpoints = get_method("closed_form").fit(original_dir, output_dir, attribute, config.closed_form_weights,
                                                WORLD_ATTRIBUTE_PROMPTS, embedding_config=embedding)
    checkpoints += get_method("bendvlm").fit(original_dir, output_dir, gallery, attribute, config.bendvlm_neighbors,
                                             WORLD_ATTRIBUTE_PROMPTS, embedding_config=embedding)
    checkpoints += get_method("sfid").fit(original_dir, output_dir, gallery, attribute, config.sfid_prune_counts,
                                          seed=seed, embedding_config=embedding)
    checkpoints += get_method("spd").fit(original_dir, output_dir, gallery, attribute, config.spd_axes, seed=seed,
                                         embedding_config=embedding)
    return checkpoints


# The world's caption of a labelled person, in the words of its biased-prompts file.
BIAS_ALIGNMENT_TEMPLATE = "a photo of a {age} {skin_tone} {gender}"


def fit_bias_alignment(config: DemoConfig, original_dir: Path, gallery, output_dir: Path, seed: int, evaluation,
                       counterfactual_dataset=None, quiet: bool = True) -> list:
    """The bias-alignment module trained on the world's labelled people to remove its three attributes:
    the variants `config.bias_alignment_variants` names (the image-counterfactual one needs
    `counterfactual_dataset`)."""
    import yaml

    from cf_hf.methods import get_method
    from cf_hf.methods.bias_alignment.trainer import BiasAlignmentArguments

    from ..corpus import ATTRIBUTES

    prompts = yaml.safe_load((WORLD_DIR / "biased_prompts.yaml").read_text(encoding="utf-8"))
    arguments = BiasAlignmentArguments(
        output_dir=str(output_dir), num_train_epochs=config.bias_alignment_epochs,
        learning_rate=config.bias_alignment_learning_rate, per_device_train_batch_size=config.bias_alignment_batch_size,
        queue_size=config.bias_alignment_queue_size, save_strategy="no", use_cpu=True, seed=seed, data_seed=seed,
        disable_tqdm=quiet, logging_steps=50,
        # The demo's own small schedule (docs/method.md): its epochs all run, no held-out ABLE selection.
        eval_strategy="no", early_stopping_patience=0)
    variants = list(config.bias_alignment_variants)
    return get_method("bias_alignment").fit(original_dir, output_dir, gallery, list(ATTRIBUTES), training_arguments=arguments,
                                     template=BIAS_ALIGNMENT_TEMPLATE, words=prompts["attributes"],
                                     counterfactual_dataset=counterfactual_dataset, variants=variants,
                                     embedding_config=evaluation.embedding)


def evaluation_config(config: DemoConfig, quiet: bool):
    """The `cf_hf.evaluation.EvaluationConfig` of every evaluation in the run."""
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


def validation_numbers(models: dict, sets, evaluation_config) -> dict:
    """`headline` numbers of `models` on the validation sets (`world_sets(..., "validation")`), R@5
    the mean over the Flickr draws."""
    from cf_hf.evaluation import evaluate_models

    fairface, flickr, imagenet = sets
    results = evaluate_models(models, fairness=fairface, retrieval=flickr, zero_shot=imagenet, config=evaluation_config)
    numbers = {}
    for name, entry in results["models"].items():
        numbers[name] = headline(entry)
        recalls = [float(draw["text_to_image"]["5"]) for draw in entry["retrieval"].values()]
        numbers[name]["recall_at_5"] = float(np.mean(recalls))
    return numbers


def find_shipped_original(config: DemoConfig, corpus: SceneSet | None = None, shipped_dir: str | Path | None = None):
    """(the shipped original's folder, why) when the run may load it instead of pretraining: it was
    pretrained with the run's corpus and pretraining settings (and on `corpus`, when one is given:
    see `shipped_original`), and the run does not ask for pretraining (`pretrain_original`); (None,
    why not) otherwise.

    `shipped_dir` is where the shipped original lives (unset: the one in the package).
    """
    from ..original import ORIGINAL_DIR, shipped_original

    if config.pretrain_original:
        return None, "pretraining asked for (--pretrain_original)"
    return shipped_original(corpus, config.corpus, config.pretrain, path=shipped_dir or ORIGINAL_DIR)


def copy_shipped_original(shipped_dir: Path, original_dir: Path) -> Path:
    """Copy the shipped original into the run's `original_dir` (the outputs stay self-contained)."""
    shutil.rmtree(original_dir, ignore_errors=True)
    shutil.copytree(shipped_dir, original_dir)
    return original_dir


def pretrain_original(config: DemoConfig, corpus: SceneSet, original_dir: Path, log=None) -> Path:
    """Pretrain the original CLIP from scratch on `corpus` and save it to `original_dir`."""
    import torch

    from ..pretrain import pretrain_original_clip

    shutil.rmtree(original_dir, ignore_errors=True)  # no file of an earlier original may remain
    torch.manual_seed(config.pretrain.seed)
    pretrain_original_clip(corpus, config.pretrain, output_dir=original_dir, log=log)
    return original_dir


def generation_config(config: DemoConfig, seed: int):
    """The `cf_hf.generation.GenerationConfig` of the world's counterfactual dataset for `seed`."""
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

    from ..components import WorldCaptionWriter, WorldInpainter, WorldSegmenter, WorldTextToImage

    report = generate(
        generation_config(config, seed),
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


def decorator_columns() -> tuple[str, ...]:
    """The counterfactual dataset's decorator columns, in the order of the world's decorators file."""
    from cf_hf.concepts import load_decorators
    from cf_hf.generation.orchestration.config import DECORATOR_PREFIX

    return tuple(DECORATOR_PREFIX + name for name in load_decorators(WORLD_DIR / "decorators.yaml"))


def training_arguments(config: DemoConfig, output_dir: Path, seed: int, quiet: bool, **overrides):
    """`CounterfactualTrainingArguments` of the demo's fine-tuning; `overrides` replace any field."""
    from cf_hf.methods.counterfactual.trainer import CounterfactualTrainingArguments

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
        # The demo shows the fine-tuning's bar, not its loss dictionaries (the Trainer prints each log).
        logging_strategy="no",
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=seed,
        data_seed=seed,
        # One worker decodes and collates the next batch while the step runs.
        dataloader_num_workers=1,
        dataloader_persistent_workers=True,
        disable_tqdm=quiet,
        caption_suffix_columns=list(decorator_columns()) if config.caption_decorators else [],
        freeze_text=config.freeze_text,
    )
    values.update(overrides)
    return CounterfactualTrainingArguments(**values)


def fine_tune(
    config: DemoConfig, original_dir: Path, dataset, output_dir: Path, seed: int, quiet: bool, **overrides
) -> Path:
    """`cf_hf.methods.counterfactual.trainer.train` from the original checkpoint; returns the fine-tuned checkpoint folder."""
    from cf_hf.methods.counterfactual.trainer import train

    args = training_arguments(config, output_dir, seed, quiet, **overrides)
    return Path(train(str(original_dir), dataset, args))
