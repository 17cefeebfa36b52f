"""Run the From Fake to Real experiment in the world and tabulate it.

For each seed: one pool of real scenes (subsampled to each bias level), a real validation set per
bias level, biased like the training set with at least `validation_min_minority` images per
minority group (as the authors make theirs), a group-balanced real test set, and the world's
counterfactual dataset generated once per signature setting (its train split is the synthetic pool
each schedule takes its per-group counts from, `cf_hf.methods.ffr.schedules`; its test split feeds
the probe). Then every (bias, signature, schedule, loss) cell is trained from the world's original
CLIP for `epochs` epochs per stage, keeping each stage's epoch with the best validation worst-group
accuracy, and evaluated: worst-group, balanced and mean accuracy and the stereotype gap on the real
test set, and the synthetic-vs-real probe on the trained features. The `real` schedule never sees
synthetic data, so it is trained once per (bias, loss) and probed against each signature's images;
ffr's stage 1 depends on the bias (its size is USB's total) and the signature, and is shared by its
stage-2 runs.

Results go to `results.jsonl` one line per cell, keyed by the cell and a digest of every setting
that changes a result (`settings_digest`); a rerun skips the cells already there (resume), and a
run with other settings trains its own cells into its own folders.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import render
from ..corpus import STEREOTYPES
from .data import (
    LABEL_COLUMN,
    SPURIOUS_ATTRIBUTE,
    counterfactual_rows,
    minority_count,
    other_gender,
    render_groups,
    synthetic_dataset,
)

RESULTS_FILE = "results.jsonl"
REPORT_FILE = "ffr_report.md"
# The signature the experiment turns on: ±3 intensity levels, under the world's camera noise.
DEFAULT_SIGNATURE = 3.0
METRICS = ("worst_group_accuracy", "balanced_accuracy", "mean_accuracy", "stereotype_gap", "probe_accuracy")
# Seed offsets, so that the test set and the synthetic data never share random draws with the pool.
TEST_SEED_OFFSET, SYNTHETIC_SEED_OFFSET, VALIDATION_SEED_OFFSET = 1000, 2000, 3000
SCHEDULES, LOSSES = ("real", "usb", "asb", "ffr"), ("erm", "groupdro")
# The lists of cells; every other field changes a cell's result.
CELL_FIELDS = ("seeds", "bias_levels", "signatures", "schedules", "losses")
# Fields that change the data (real sets and generated pools), not only the training.
DATA_FIELDS = ("per_class", "validation_per_class", "validation_min_minority", "test_per_group",
               "captions_per_concept", "decorators_per_caption", "appearances_per_base")


@dataclass
class FFRConfig:
    """The experiment's settings (module docstring)."""

    bias_levels: list[float] = field(default_factory=lambda: [0.95, 0.99, 0.999])
    signatures: list[float] = field(default_factory=lambda: [0.0, DEFAULT_SIGNATURE])
    schedules: list[str] = field(default_factory=lambda: list(SCHEDULES))
    losses: list[str] = field(default_factory=lambda: ["erm", "groupdro"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    per_class: int = 500
    # The authors' validation split is an eighth of their training split, made biased with at
    # least 10 images per minority group (`make_harder(keep_min=True)`).
    validation_per_class: int = 64
    validation_min_minority: int = 10
    test_per_group: int = 50
    epochs: float = 10
    synthetic_epochs: float = 10
    batch_size: int = 32
    learning_rate: float = 3e-4
    weight_decay: float = 1e-5
    groupdro_step_size: float = 0.01
    # Enough generated images that USB can fill every minority group up to the majority at the
    # highest bias level (16 captions x 12 bases x 8 appearances per profession: 768 per group, about
    # 576 in the train split; at 99.9% bias USB needs 498).
    captions_per_concept: int = 16
    decorators_per_caption: int = 12
    appearances_per_base: int = 8

    def __post_init__(self):
        for bias in self.bias_levels:
            minority_count(self.per_class, bias)  # checks the range
        for signature in self.signatures:
            if signature < 0:
                raise ValueError(f"signatures must be >= 0 (intensity levels), got {signature}")
        unknown = set(self.schedules) - set(SCHEDULES) | set(self.losses) - set(LOSSES)
        if unknown:
            raise ValueError(f"unknown schedules or losses {sorted(unknown)}: use {'/'.join(SCHEDULES)} and "
                             f"{'/'.join(LOSSES)}")
        if self.epochs <= 0 or self.synthetic_epochs <= 0:
            raise ValueError(f"epochs and synthetic_epochs must be > 0, got {self.epochs} and {self.synthetic_epochs}")
        if self.validation_min_minority < 1:
            raise ValueError(f"validation_min_minority must be >= 1 (the worst group needs an image), got "
                             f"{self.validation_min_minority}")


def settings_digest(config: FFRConfig, fields=None) -> str:
    """A short digest of the settings in `fields` (default: every field but the cell lists)."""
    settings = {name: value for name, value in asdict(config).items()
                if name not in CELL_FIELDS and (fields is None or name in fields)}  # fmt: skip
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def cell_key(seed: int, bias: float, signature: float, schedule: str, loss: str, settings: str) -> str:
    return f"seed={seed} bias={bias} signature={signature} schedule={schedule} loss={loss} settings={settings}"


def read_results(output_dir: Path) -> list[dict]:
    path = Path(output_dir) / RESULTS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _append_result(output_dir: Path, row: dict) -> None:
    with open(Path(output_dir) / RESULTS_FILE, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")


def _saved(folder: Path, build):
    """The dataset saved in `folder`, built and saved first if missing (datasets' `map` caches
    its encodings next to a saved dataset, so every run encodes it once)."""
    import datasets

    if not (folder / "state.json").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        build().save_to_disk(str(folder))
    return datasets.load_from_disk(str(folder))


def real_pool_counts(config: FFRConfig) -> dict[tuple[str, str], int]:
    """Per group, the pool size every bias level can be cut from."""
    largest_minority = max(minority_count(config.per_class, bias) for bias in config.bias_levels)
    counts = {}
    for profession in render.PROFESSIONS:
        stereotyped = STEREOTYPES[profession].gender
        counts[(profession, stereotyped)] = config.per_class - min(
            minority_count(config.per_class, bias) for bias in config.bias_levels)
        counts[(profession, other_gender(stereotyped))] = largest_minority
    return counts


def biased_subset(pool, per_class: int, bias: float):
    """The real training set at `bias`: per profession the first `per_class - minority` stereotyped
    and the first `minority` other images of the pool."""
    minority = minority_count(per_class, bias)
    labels, genders = np.array(pool[LABEL_COLUMN]), np.array(pool[SPURIOUS_ATTRIBUTE])
    keep = []
    for index, profession in enumerate(render.PROFESSIONS):
        stereotyped = render.GENDERS.index(STEREOTYPES[profession].gender)
        keep += list(np.flatnonzero((labels == index) & (genders == stereotyped))[: per_class - minority])
        keep += list(np.flatnonzero((labels == index) & (genders != stereotyped))[:minority])
    return pool.select(sorted(keep))


def validation_counts(config: FFRConfig, bias: float) -> dict[tuple[str, str], int]:
    """Per group, the real validation set at `bias`: biased like the training set, with at least
    `validation_min_minority` images of each minority group."""
    minority = minority_count(config.validation_per_class, bias, config.validation_min_minority)
    if minority >= config.validation_per_class:
        raise ValueError(f"validation_per_class={config.validation_per_class} leaves no stereotyped images once "
                         f"each minority group has {minority} (validation_min_minority); raise validation_per_class")
    counts = {}
    for profession in render.PROFESSIONS:
        stereotyped = STEREOTYPES[profession].gender
        counts[(profession, stereotyped)] = config.validation_per_class - minority
        counts[(profession, other_gender(stereotyped))] = minority
    return counts


@dataclass
class SeedData:
    real: dict  # bias -> saved dataset
    validation: dict  # bias -> saved dataset
    test: object
    synthetic_train: dict  # signature -> saved dataset
    synthetic_test: dict  # signature -> saved dataset


def prepare_seed(config: FFRConfig, seed: int, data_dir: Path, show_progress: bool) -> SeedData:
    """Render, generate and save every dataset of a seed (reused when already saved)."""
    from cf_hf.methods.training_utils import load_training_dataset

    pool = _saved(data_dir / "real-pool", lambda: render_groups(real_pool_counts(config), seed))
    real = {bias: _saved(data_dir / f"real-bias-{bias}", lambda bias=bias: biased_subset(pool, config.per_class, bias))
            for bias in config.bias_levels}  # fmt: skip
    validation = {bias: _saved(data_dir / f"validation-bias-{bias}", lambda bias=bias: render_groups(
        validation_counts(config, bias), seed + VALIDATION_SEED_OFFSET)) for bias in config.bias_levels}
    test = _saved(data_dir / "real-test", lambda: render_groups(
        {(p, g): config.test_per_group for p in render.PROFESSIONS for g in render.GENDERS}, seed + TEST_SEED_OFFSET))
    synthetic_train, synthetic_test = {}, {}
    for signature in config.signatures:
        folder = data_dir / f"synthetic-signature-{signature}"
        exported = synthetic_dataset(
            folder / "generated", seed + SYNTHETIC_SEED_OFFSET, signature, config.captions_per_concept,
            config.decorators_per_caption, config.appearances_per_base, show_progress=show_progress,
        )  # fmt: skip
        synthetic_train[signature] = _saved(folder / "train", lambda exported=exported: counterfactual_rows(
            load_training_dataset(str(exported), "train")))
        synthetic_test[signature] = _saved(folder / "test", lambda exported=exported: counterfactual_rows(
            load_training_dataset(str(exported), "test")))
    return SeedData(real, validation, test, synthetic_train, synthetic_test)


def training_arguments(config: FFRConfig, output_dir: Path, seed: int, schedule: str, loss: str, quiet: bool):
    from cf_hf.methods.ffr.trainer import ClassifierTrainingArguments

    # As the authors train: a constant learning rate, GroupDRO on shuffled batches (no resampling).
    return ClassifierTrainingArguments(
        output_dir=str(output_dir), schedule=schedule, loss=loss, num_train_epochs=config.epochs,
        synthetic_num_train_epochs=config.synthetic_epochs, per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=256, learning_rate=config.learning_rate, weight_decay=config.weight_decay,
        groupdro_step_size=config.groupdro_step_size, group_balanced_sampling=False, label_column=LABEL_COLUMN,
        group_column=SPURIOUS_ATTRIBUTE, lr_scheduler_type="constant", save_strategy="no", report_to="none",
        use_cpu=True, seed=seed, data_seed=seed, logging_strategy="no", disable_tqdm=True,
        dataloader_num_workers=0,
    )  # fmt: skip


def evaluate_run(model_dir: Path, data: SeedData, signatures, seed: int) -> dict:
    """Metrics on the real test set and, per signature, the probe accuracy (`probe_accuracy/<signature>`)."""
    from cf_hf.methods.ffr.evaluation import evaluate_checkpoint

    stereotypes = {profession: STEREOTYPES[profession].gender for profession in render.PROFESSIONS}
    probes = {str(signature): data.synthetic_test[signature] for signature in signatures}
    return evaluate_checkpoint(model_dir, data.test, stereotypes, LABEL_COLUMN, SPURIOUS_ATTRIBUTE, probes, seed)


# The settings a cell's key names; every other setting changes every cell, so a resume must share it.
GRID_SETTINGS = ("seeds", "bias_levels", "signatures", "schedules", "losses")


def check_resumable(config: FFRConfig, output_dir: Path) -> None:
    """Refuse to resume the results in `output_dir` under settings (other than the grid) that differ from
    those they were computed with: the cells are keyed by seed, bias, signature, schedule and loss only."""
    try:
        before = json.loads((output_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not read_results(output_dir):
        return
    now = json.loads(json.dumps(asdict(config)))
    changed = [f"{name}: {before.get(name)!r} -> {value!r}" for name, value in now.items()
               if name not in GRID_SETTINGS and before.get(name) != value]
    if changed:
        raise ValueError(f"{output_dir} holds results computed with other settings ({'; '.join(changed)}): resuming "
                         "would report them under the new ones. Use another folder, or the same settings.")


def run_experiment(config: FFRConfig, output_dir: str | Path, quiet: bool = False) -> list[dict]:
    """Run every cell not yet in `results.jsonl` (resume), write the report; returns all results."""
    from tqdm.auto import tqdm

    from cf_hf.methods.ffr.trainer import train_classifier

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    check_resumable(config, output_dir)
    (output_dir / "config.json").write_text(json.dumps(asdict(config), indent=1) + "\n", encoding="utf-8")
    done = {row["key"] for row in read_results(output_dir)}
    settings, data_settings = settings_digest(config), settings_digest(config, DATA_FIELDS)
    for seed in config.seeds:
        seed_dir = output_dir / f"seed-{seed}"
        models_dir = seed_dir / f"models-{settings}"
        cells = [(bias, schedule, loss) for bias in config.bias_levels for schedule in config.schedules
                 for loss in config.losses]  # fmt: skip
        todo = [cell for cell in cells if any(
            cell_key(seed, cell[0], signature, cell[1], cell[2], settings) not in done
            for signature in config.signatures)]
        if not todo:
            continue
        started = time.monotonic()
        data = prepare_seed(config, seed, seed_dir / f"data-{data_settings}", show_progress=not quiet)
        runs = [(bias, schedule, loss, signature) for bias, schedule, loss in todo
                for signature in (["any"] if schedule == "real" else config.signatures)]  # fmt: skip
        for bias, schedule, loss, signature in tqdm(runs, desc=f"FFR runs, seed {seed}", disable=quiet):
            signatures = config.signatures if schedule == "real" else [signature]
            name = f"bias-{bias}_{schedule}_{loss}" + ("" if schedule == "real" else f"_signature-{signature}")
            model_dir = models_dir / name
            run_started = time.monotonic()
            train_classifier(
                str(Path(__file__).resolve().parent.parent / "original_clip"), data.real[bias],
                None if schedule == "real" else data.synthetic_train[signature],
                training_arguments(config, model_dir, seed, schedule, loss, quiet),
                synthetic_stage_dir=models_dir / f"ffr-stage-1_bias-{bias}_signature-{signature}",
                validation_dataset=data.validation[bias],
            )  # fmt: skip
            evaluation = evaluate_run(model_dir, data, signatures, seed)
            metrics = {name: value for name, value in evaluation.items() if not name.startswith("probe_accuracy/")}
            for probed in signatures:
                row = {"key": cell_key(seed, bias, probed, schedule, loss, settings), "settings": settings,
                       "seed": seed, "bias": bias,
                       "signature": probed, "schedule": schedule, "loss": loss, **metrics,
                       "probe_accuracy": evaluation[f"probe_accuracy/{probed}"],
                       "run_seconds": round(time.monotonic() - run_started, 1)}  # fmt: skip
                _append_result(output_dir, row)
        _append_result(output_dir, {"key": f"seed={seed} settings={settings} wall", "seed": seed,
                                    "settings": settings,
                                    "seed_seconds": round(time.monotonic() - started, 1)})
    results = [row for row in read_results(output_dir) if row.get("settings") == settings]
    (output_dir / REPORT_FILE).write_text(report(results, config), encoding="utf-8")
    return results


def summary_table(results: list[dict], config: FFRConfig) -> str:
    """Markdown: per (bias, signature, schedule, loss), mean ± std over seeds of worst-group and
    balanced accuracy, the stereotype gap and the probe accuracy (percent)."""
    lines = ["| bias | signature | schedule | loss | worst-group acc. | balanced acc. | stereotype gap | probe acc. | seeds |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for bias in config.bias_levels:
        for signature in config.signatures:
            for schedule in config.schedules:
                for loss in config.losses:
                    rows = [row for row in results if row.get("bias") == bias and row.get("signature") == signature
                            and row.get("schedule") == schedule and row.get("loss") == loss]  # fmt: skip
                    if not rows:
                        continue
                    cells = []
                    for metric in ("worst_group_accuracy", "balanced_accuracy", "stereotype_gap", "probe_accuracy"):
                        values = 100 * np.array([row[metric] for row in rows])
                        cells.append(f"{values.mean():.1f} ± {values.std():.1f}")
                    lines.append(f"| {100 * bias:g}% | {'on' if signature else 'off'} ({signature:g}) | {schedule} | "
                                 f"{loss} | {' | '.join(cells)} | {len(rows)} |")  # fmt: skip
    return "\n".join(lines)


def report(results: list[dict], config: FFRConfig) -> str:
    """The experiment's report: the settings, the table and the time per seed."""
    walls = [row["seed_seconds"] for row in results if "seed_seconds" in row]
    return "\n".join([
        "# From Fake to Real in the professions world", "",
        f"Real training data: {config.per_class} scenes per profession; test: {config.test_per_group} per "
        f"(profession, gender); validation: {config.validation_per_class} per profession, biased like the training "
        f"data, at least {config.validation_min_minority} per minority group. Epochs per stage: {config.epochs:g} "
        f"(real, usb, asb, ffr stage 2), {config.synthetic_epochs:g} (ffr stage 1); each stage keeps its epoch "
        f"with the best validation worst-group accuracy. Batch {config.batch_size}, learning rate "
        f"{config.learning_rate} (constant), weight decay {config.weight_decay}. Settings digest {settings_digest(config)}. "
        "Mean ± std over seeds, percent; std with ddof=0.", "",
        summary_table(results, config), "",
        "Wall time per seed (s): " + (", ".join(f"{wall:.0f}" for wall in walls) or "none recorded"), "",
    ])  # fmt: skip
