"""`run_demo`: every stage of the demo in order, from the world to results.json, report.md, plots
and model cards (the stages themselves: `stages`, `ablations`; the numbers: `summary`)."""

from __future__ import annotations

import logging
import resource
import shutil
import time
from pathlib import Path

from cf_hf.evaluation.results import ORIGINAL, RESULTS_FILE, write_results
from cf_hf.interpolation import alpha_key

from .. import corpus as corpus_module
from ..corpus import ATTRIBUTES
from ..gallery_files import GalleryFiles, write_gallery_files
from .ablations import ablation_models
from .config import GALLERY_SEEDS, METHOD_FIT_SEED, DemoConfig
from .explorer import EXPLORER_CACHE
from .model_cards import write_model_cards
from .plots import write_plots
from .report import SWEEP_QUERY_COST, render_report
from .stages import (
    DEMO_TRAINING_FREE_METHODS,
    PRETRAINED,
    SHIPPED,
    copy_shipped_original,
    evaluation_config,
    find_shipped_original,
    fine_tune,
    fit_methods,
    make_counterfactual_dataset,
    method_fit_gallery,
    pretrain_original,
    validation_numbers,
    world_sets,
)
from .statistics import headline
from .summary import summarise

# The test galleries (and the methods' train draw) as files, under the run's folder.
GALLERY_FILES_DIR = "galleries"
# What `cf-hf demo` writes at the top of its output folder, and what the commands it prints write there
# (`compare`, the explorer's cache): `claim_output_folder` refuses anything else.
DEMO_OUTPUTS = (GALLERY_FILES_DIR, "original", "seed-*", "evaluation", "plots", "results.json", "report.md", "compare",
                EXPLORER_CACHE)


class Progress:
    """One line per stage with the elapsed time: the demo's progress display."""

    def __init__(self, total_stages: int, quiet: bool = False):
        self.start = time.perf_counter()
        self.total = total_stages
        self.done = 0
        self.quiet = quiet
        self.stage_seconds: dict[str, float] = {}
        self._current: tuple[str, float] | None = None

    def stage(self, name: str) -> None:
        """Start the next stage (and close the running one)."""
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
        """Print one line with the elapsed time (nothing when quiet)."""
        if not self.quiet:
            print(f"[{time.perf_counter() - self.start:7.1f} s] {text}", flush=True)

    def finish(self) -> float:
        """Close the running stage; the elapsed seconds."""
        self._close()
        return time.perf_counter() - self.start


def peak_memory_mb() -> float:
    """Peak resident set size of this process (and any waited-for children), in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0  # Linux reports kilobytes


def seed_stages(config: DemoConfig) -> int:
    """Progress stages per seed: dataset, fine-tuning, sweep, and one per set of compared models."""
    return 3 + (1 if config.ablations else 0) + (1 if config.compare_methods else 0)


def compared_models(config: DemoConfig, original_dir: Path, dataset, seed_dir: Path, seed: int,
                    progress: Progress, quiet: bool) -> dict[str, Path]:
    """The models evaluated next to the CF_α sweep for one seed (name -> checkpoint folder), each
    trained from the original on this seed: the ablations when asked for."""
    models: dict[str, Path] = {}
    if config.ablations:
        progress.stage(f"seed {seed}: ablations (β_cf = 0, unbalanced counterfactuals, biased corpus)")
        models.update(ablation_models(config, original_dir, dataset, seed_dir / "ablations", seed, quiet))
    return models


def prepare_original(config: DemoConfig, original_dir: Path, progress: Progress,
                     shipped_dir: str | Path | None = None, quiet: bool = False) -> dict:
    """The run's original CLIP in `original_dir`: the shipped one copied when `find_shipped_original`
    accepts it, otherwise pretrained here on the biased web corpus, which is only drawn then.
    Returns {"source": "shipped" | "pretrained", "reason"}."""
    shipped, why = find_shipped_original(config, shipped_dir=shipped_dir)
    if shipped is not None:
        progress.stage("the original CLIP: the shipped one, loaded (pretrained with this run's corpus and "
                       "pretraining settings; not pretrained in this run)")  # fmt: skip
        copy_shipped_original(Path(shipped), original_dir)
        return {"source": SHIPPED, "reason": "the shipped original was pretrained with this run's corpus and "
                                             "pretraining settings"}  # fmt: skip
    progress.stage(f"pretraining the original CLIP from scratch ({config.pretrain.steps} steps) on the biased web "
                   f"corpus ({config.corpus.size} pairs): {why}")
    corpus = corpus_module.make_corpus(config.corpus)
    pretrain_original(config, corpus, original_dir, log=None if quiet else progress.say)
    return {"source": PRETRAINED, "reason": why}


def compare_command(config: DemoConfig, output_dir: Path, gallery_files: GalleryFiles, sweep_dir: Path) -> list[str]:
    """The `cf-hf compare` command that scores the run's first seed again from files, as a user would:
    the CF_α sweep and every training-free method the demo compared, with the demo's settings, on the
    test galleries written under `galleries/`. The methods' labelled set (the train draw), the attributes
    they remove and the prompts files come from the galleries' manifest (`--galleries`), whose `--attribute`
    is the world's three: with other `method_attributes` the closed form, BendVLM, SFID and SPD are left
    out (one command gives every method the same attributes). The bias-alignment module, which the demo
    trains only with `--bias_alignment`, is not in it (its caption words are the demo's own)."""
    command = ["cf-hf", "compare", "--galleries", str(gallery_files.folder), "--original", str(output_dir / "original"),
               "--sweep", str(sweep_dir)]
    if config.compare_methods:
        every_attribute = list(config.method_attributes) == list(ATTRIBUTES)
        methods = [name for name in DEMO_TRAINING_FREE_METHODS
                   if every_attribute or name in ("clip_clip", "biased_prompts")]
        command += ["--methods", *methods,
                    "--clip_clip_keep", *map(str, config.clip_clip_keep),
                    "--biased_prompts_lambda", *(f"{value:g}" for value in config.biased_prompts_lambdas)]
        if every_attribute:
            command += ["--closed_form_weight", *(f"{value:g}" for value in config.closed_form_weights),
                        "--bendvlm_neighbors", *map(str, config.bendvlm_neighbors),
                        "--sfid_prune_count", *map(str, config.sfid_prune_counts),
                        "--spd_axes", *map(str, config.spd_axes)]
    return [*command, "--output_dir", str(output_dir / "compare")]


def query_costs(models: dict[str, Path], fairface, evaluation) -> dict[str, float]:
    """Milliseconds per fairness query of each of `models` (name -> checkpoint folder), measured with no
    cache on the run's fairness queries (`cf_hf.methods.compare.measure_query_cost`)."""
    from cf_hf.methods.compare import fairness_query_texts, measure_query_cost

    texts = fairness_query_texts(fairface, evaluation)
    return {name: round(measure_query_cost(path, texts, evaluation.embedding), 4) for name, path in models.items()}


def run_demo(config: DemoConfig, output_dir: str | Path, quiet: bool = False,
             shipped_dir: str | Path | None = None, verbose: bool = False) -> dict:
    """Run every stage (`cf_hf.world.demo`); write results.json, report.md, plots and model cards to
    `output_dir`; return the results. `shipped_dir`: where the shipped original lives (unset: the
    package's).

    What it prints: nothing when `quiet`; else one line per stage with its time and the fine-tuning's
    progress bar; `verbose` adds every inner bar (embedding, generation, export) and the libraries' own."""
    import datasets as hf_datasets

    from cf_hf.evaluation import evaluate_models, write_report
    from cf_hf.interpolation import interpolate_sweep

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    progress = Progress(3 + config.seeds * seed_stages(config) + 1, quiet)
    # The stages' own bars (embedding, generation, the BA heads' training) show only when verbose; the
    # fine-tuning's bar is the long stage's progress and shows unless quiet.
    inner_quiet = quiet or not verbose
    if inner_quiet:
        from cf_hf.utils.logging import silence_progress_bars

        silence_progress_bars()

    progress.stage("the world: evaluation galleries (test, validation and the methods' train draw)")
    fairface, flickr, imagenet = world_sets(config)
    validation_sets = world_sets(config, "validation")
    fit_gallery = method_fit_gallery(config) if config.compare_methods else None
    evaluation = evaluation_config(config, inner_quiet)
    gallery_files = write_gallery_files(output_dir / GALLERY_FILES_DIR, fairface, imagenet, flickr, fit_people=fit_gallery,
                                        draws={"seeds": dict(zip(("fairface", "imagenet", "flickr"), GALLERY_SEEDS["test"])),
                                               "method_fit_seed": METHOD_FIT_SEED},
                                        fairness_k=config.fairness_k,
                                        random_floor_queries=config.random_floor_queries)  # fmt: skip

    original_dir = output_dir / "original"
    original_source = prepare_original(config, original_dir, progress, shipped_dir, quiet)

    progress.stage("evaluating the original CLIP and the random-ranking floor")
    original_results = evaluate_models({ORIGINAL: original_dir}, fairness=fairface, retrieval=flickr,
                                       zero_shot=imagenet, config=evaluation)  # fmt: skip
    original = headline(original_results["models"][ORIGINAL])
    floor = original_results["protocol"]["fairness"]["galleries"][fairface.name]["random_floor"]
    validation = {"original": validation_numbers({ORIGINAL: original_dir}, validation_sets, evaluation)[ORIGINAL],
                  "per_seed": []}  # fmt: skip

    per_seed: list[dict] = []
    query_ms: dict[str, float] = {}  # first seed: milliseconds per fairness query of the compared models
    method_runs: list[dict] = []  # per seed: fitted checkpoint name -> `MethodCheckpoint.record()`
    first_seed_results = None
    first_sweep_dir = None
    generation_summary = {}
    for seed in range(config.seeds):
        seed_dir = output_dir / f"seed-{seed}"
        progress.stage(f"seed {seed}: counterfactual dataset (cf_hf.generation with the world's components)")
        dataset_dir = seed_dir / "dataset"
        report = make_counterfactual_dataset(config, seed, seed_dir / "generation", dataset_dir, inner_quiet)
        generation_summary[f"seed-{seed}"] = {"base_images": report.base_images, "counterfactuals": report.counterfactuals,
                                              "stage_seconds": {k: round(v, 2) for k, v in report.stage_seconds.items()}}  # fmt: skip
        # `load_dataset(folder)`, as a user would; its Arrow cache stays inside the run's folder.
        dataset = hf_datasets.load_dataset(str(dataset_dir), split="train", cache_dir=str(seed_dir / "hf_cache"))

        progress.stage(f"seed {seed}: fine-tuning with the counterfactual loss ({config.finetune_steps} steps)")
        finetuned_dir = fine_tune(config, original_dir, dataset, seed_dir / "finetuned", seed, quiet)

        progress.stage(f"seed {seed}: WiSE-FT sweep over α = {', '.join(f'{a:g}' for a in config.alphas)}")
        sweep_dir = seed_dir / "sweep"
        # A fresh sweep: one left by an earlier run (other settings) must not add its α's to this one.
        shutil.rmtree(sweep_dir, ignore_errors=True)
        sweep = interpolate_sweep(original_dir, finetuned_dir, config.alphas, sweep_dir)
        models = {alpha_key(entry["alpha"]): sweep_dir / entry["path"] for entry in sweep["alphas"]}
        if config.compare_methods:
            progress.stage(f"seed {seed}: CLIP-clip (m = {', '.join(map(str, config.clip_clip_keep))}) and biased "
                           f"prompts (λ = {', '.join(f'{lam:g}' for lam in config.biased_prompts_lambdas)}), "
                           f"fitted on the original (cf_hf.methods); the closed form, BendVLM, SFID and SPD of "
                           f"{', '.join(config.method_attributes)} jointly"
                           + (f"; the bias-alignment module ({', '.join(config.bias_alignment_variants)})"
                              if config.bias_alignment else ""))  # fmt: skip
            fitted = fit_methods(config, original_dir, fit_gallery, seed_dir / "methods", seed, evaluation,
                                 counterfactual_dataset=dataset, quiet=inner_quiet)
            method_runs.append({checkpoint.name: checkpoint.record() for checkpoint in fitted})
            models.update({checkpoint.name: checkpoint.path for checkpoint in fitted})
        progress.say(f"seed {seed}: evaluating the sweep and the methods on the validation sets (they choose α, m, λ)")
        validation["per_seed"].append(validation_numbers(models, validation_sets, evaluation))
        models.update(compared_models(config, original_dir, dataset, seed_dir, seed, progress, quiet))
        progress.say(f"seed {seed}: evaluating {len(models)} models")
        results = evaluate_models(models, fairness=fairface, retrieval=flickr, zero_shot=imagenet, config=evaluation,
                                  alphas={alpha_key(alpha): float(alpha) for alpha in config.alphas})  # fmt: skip
        per_seed.append({name: headline(entry) for name, entry in results["models"].items()})
        if first_seed_results is None:
            if config.compare_methods:
                measured = {ORIGINAL: original_dir, SWEEP_QUERY_COST: models[alpha_key(max(config.alphas))]}
                measured.update({name: path for name, path in models.items() if name in method_runs[0]})
                query_ms = query_costs(measured, fairface, evaluation)
            results["models"] = {ORIGINAL: original_results["models"][ORIGINAL], **results["models"]}
            first_seed_results, first_sweep_dir = results, sweep_dir

    progress.stage("results, report, plots and model cards")
    results = summarise(config, original, floor, per_seed, validation, method_runs)
    results["config"]["original"] = original_source
    results["query_ms"] = query_ms
    # Every model was evaluated with the original's protocol (one config, the same galleries).
    results["protocol"] = original_results["protocol"]
    for entry in results["models"].values():
        entry["fairness_k"] = original_results["models"][ORIGINAL]["fairness_k"]
    results["generation"] = generation_summary
    results["compare_command"] = compare_command(config, output_dir, gallery_files, first_sweep_dir)
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
