"""report.md of the demo and the tables it prints: the headline, the targets, the α sweep, the
ablations and what ran."""

from __future__ import annotations

from pathlib import Path

from cf_hf.evaluation.results import FAIRNESS_METRICS, ORIGINAL
from cf_hf.interpolation import alpha_key
from cf_hf.methods.compare import needs_cells
from cf_hf.methods.registry import NEEDS

from .. import galleries, render
from ..corpus import ATTRIBUTES
from .ablations import ABLATION_NAMES
from .config import GALLERY_SEEDS, TARGET_REDUCTION
from .selection import fairness_score
from .stages import SHIPPED

# results.json's `query_ms` key of the CF_α sweep's cost (every α is a plain CLIPModel of one shape).
SWEEP_QUERY_COST = "CF_α sweep"


def _pm(mean: float, std: float | None, digits: int = 3) -> str:
    """`mean ± std`, or the mean alone when there is no spread to show (`std` None: one seed)."""
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _spread(results: dict, name: str):
    """The model's std over seeds as a function `(attribute or None, metric) -> std`, giving None (no
    spread shown) for one seed, for the original, which the seeds do not change, and for a model whose
    every number is the same in every seed (a deterministic fit)."""
    if results.get("seeds", 1) <= 1 or name == ORIGINAL:
        return lambda attribute, metric: None
    std = results["std"].get(name, {})
    numbers = [value for value in std.values() if isinstance(value, (int, float))]
    numbers += [value for part in std.values() if isinstance(part, dict) for value in part.values()
                if isinstance(value, (int, float))]  # fmt: skip
    if numbers and max(numbers) < 1e-12:  # np.std of equal floats can be 1e-17, not 0
        return lambda attribute, metric: None
    return lambda attribute, metric: (std.get(attribute, {}) if attribute else std).get(metric, 0.0)


def _scaled(value: float | None, scale: float) -> float | None:
    return None if value is None else scale * value


def summary_rows(results: dict) -> list[list[str]]:
    """The headline table: original, chosen CF_α, floor; MaxSkew / NDKL per attribute, accuracy, R@5."""
    chosen = alpha_key(results["chosen_alpha"])
    rows = []
    for label, key in ((ORIGINAL, ORIGINAL), (f"CF_α (α = {results['chosen_alpha']:g})", chosen)):
        entry, spread = results["models"][key], _spread(results, key)
        row = [label]
        for name in ATTRIBUTES:
            for metric in ("max_skew", "ndkl"):
                row.append(_pm(entry[name][metric], spread(name, metric)))
        for metric in ("zero_shot_accuracy", "recall_at_5"):
            row.append(_pm(100 * entry[metric], _scaled(spread(None, metric), 100), 1))
        rows.append(row)
    change = results["reduction"][chosen]["mean"]
    change_std = results["reduction"][chosen]["std"]
    several = results.get("seeds", 1) > 1
    row = ["reduction / change"]
    for name in ATTRIBUTES:
        for metric in ("max_skew", "ndkl"):
            spread_text = f" ± {100 * change_std[name][metric]:.0f}" if several else ""
            row.append(f"{100 * change[name][metric]:.0f}%{spread_text}")
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


def comparison_models(results: dict) -> list[tuple[str, str]]:
    """(label, model name) of the comparison: the original, the chosen CF_α and each compared
    method's setting chosen on the validation sets (methods whose every setting lost too much
    downstream accuracy are listed with the fairest setting, marked)."""
    rows = [(ORIGINAL, ORIGINAL), (f"CF_α (α = {results['chosen_alpha']:g})", alpha_key(results["chosen_alpha"]))]
    for selection in results.get("method_selection", {}).values():
        shown = chosen_or_fairest(selection)
        marker = "" if selection["chosen"] is not None else "; none within tolerance"
        rows.append((f"{selection['label']} ({_setting(shown)}{marker})", shown))
    return rows


def chosen_or_fairest(selection: dict) -> str:
    """The model a method's row shows (one entry of results.json's `method_selection`): its chosen setting,
    or its fairest candidate when no setting kept the downstream numbers."""
    if selection["chosen"] is not None:
        return selection["chosen"]
    return max(selection["candidates"], key=lambda name: fairness_score(selection["reductions"][name]))


def _setting(name: str) -> str:
    """"clip_clip-keep=32" -> "keep = 32"."""
    key, _, value = name.split("-", 1)[1].partition("=")
    return {"keep": "m", "lambda": "λ", "weight": "w", "neighbors": "k", "axes": "axes"}.get(key, key) + f" = {value}"


def _method_of(results: dict, name: str) -> str:
    """The registered method a compared model belongs to ("original" for the original, "counterfactual" for CF_α)."""
    if name == ORIGINAL:
        return ORIGINAL
    return results.get("methods", {}).get(name, {}).get("method", "counterfactual")


def _query_ms(results: dict, name: str) -> str:
    """The measured milliseconds per fairness query of a compared model (CF_α: its sweep's, all α alike)."""
    costs = results.get("query_ms", {})
    value = costs.get(name, costs.get(SWEEP_QUERY_COST) if name.startswith("alpha=") else None)
    return "" if value is None else f"{value:.2f}"


def comparison_rows(results: dict) -> list[list[str]]:
    """One row per compared model: MaxSkew / NDKL per attribute, accuracies (mean ± std over seeds),
    the mean MaxSkew and NDKL cut, what its method needs (the registry's `needs`), the fit time and the
    per-query cost; then the random floor."""
    rows = []
    for label, name in comparison_models(results):
        entry, spread = results["models"][name], _spread(results, name)
        row = [label]
        for attribute in ATTRIBUTES:
            for metric in ("max_skew", "ndkl"):
                row.append(_pm(entry[attribute][metric], spread(attribute, metric)))
        row += [_pm(100 * entry[m], _scaled(spread(None, m), 100), 1) for m in ("zero_shot_accuracy", "recall_at_5")]
        change = results["reduction"][name]["mean"] if name != ORIGINAL else None
        row.append("" if change is None else f"{100 * fairness_score(change):.0f}%")
        row += needs_cells(_method_of(results, name))
        fit = results.get("methods", {}).get(name, {}).get("fit_seconds")
        row.append(f"{fit:.1f}" if fit is not None else "")
        row.append(_query_ms(results, name))
        rows.append(row)
    floor = results["random_floor"]
    rows.append(["random ranking (floor)"]
                + [f"{floor[name][metric]:.3f}" for name in ATTRIBUTES for metric in ("max_skew", "ndkl")]
                + [""] * (len(comparison_header()) - 1 - 2 * len(ATTRIBUTES)))  # fmt: skip
    return rows


def comparison_header() -> list[str]:
    """The columns of `comparison_rows`."""
    return summary_header() + ["mean cut", *NEEDS, "fit (s)", "ms / query"]


def summary_header() -> list[str]:
    """The columns of `summary_rows`."""
    header = ["model"]
    for name in ATTRIBUTES:
        header += [f"MaxSkew {name}", f"NDKL {name}"]
    return header + ["zero-shot acc. (%)", "R@5 (%)"]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table of `rows` under `header`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _model_rows(results: dict, names: list[str]) -> list[list[str]]:
    rows = []
    for name in names:
        entry, spread = results["models"][name], _spread(results, name)
        row = [name]
        for attribute in ATTRIBUTES:
            for metric in FAIRNESS_METRICS:
                row.append(_pm(entry[attribute][metric], spread(attribute, metric)))
        row += [_pm(100 * entry[m], _scaled(spread(None, m), 100), 1) for m in ("zero_shot_accuracy", "recall_at_5")]
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


def _original_text(config: dict) -> str:
    """How the run got its original CLIP, for "What ran"."""
    schedule = f"{config['pretrain']['steps']} steps at batch {config['pretrain']['batch_size']}"
    if config.get("original", {}).get("source") == SHIPPED:
        return f"the shipped one, loaded (pretrained from scratch once, with these settings: {schedule})."
    return f"pretrained from scratch in this run for {schedule}."


def _method_attributes(config: dict) -> str:
    """The attributes the closed form, BendVLM, SFID and SPD removed (results of runs before
    `method_attributes` recorded `single_attribute`)."""
    names = config.get("method_attributes") or [config.get("single_attribute", "gender")]
    return ", ".join(str(name).replace("_", " ") for name in names)


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
        markdown_table(summary_header(), summary_rows(results)),
        "",
        f"Fairness at k = {results['models'][ORIGINAL]['fairness_k']} on the world's FairFace (mean over "
        f"{len(galleries.FAIRNESS_TEMPLATES)} templates x {len(render.PROFESSIONS)} professions; lower is fairer); "
        "zero-shot accuracy on the world's ImageNet; text-to-image R@5 on the world's Flickr.",
        "",
        "## Targets",
        "",
    ]
    comparison = comparison_rows(results) if results.get("method_selection") else None
    for name in ATTRIBUTES:
        for metric in ("max_skew", "ndkl"):
            value = results["reduction"][alpha_key(results["chosen_alpha"])]["mean"][name][metric]
            status = "met" if targets[name][metric] else "NOT met"
            lines.append(f"- {metric} {name} reduced by ≥ {TARGET_REDUCTION:.0%}: {status} ({value:.0%})")
    lines.append(
        f"- zero-shot accuracy within 1 point: {'met' if targets['zero_shot_accuracy_within_1_point'] else 'NOT met'}"
    )
    lines.append(f"- R@5 within 1 point: {'met' if targets['recall_at_5_within_1_point'] else 'NOT met'}")
    if comparison:
        lines += [
            "",
            "## Against other debiasing methods",
            "",
            "Every training-free method of `cf_hf.methods`, fitted on the same original: CLIP-clip and biased prompts "
            "remove gender, skin tone and age at once; the closed-form projection, BendVLM, SFID and SPD, which their "
            "authors apply to one attribute at a time, remove "
            f"{_method_attributes(config)} jointly (cf_hf's extension, docs/method.md; BendVLM's reference set, SFID's "
            "and SPD's labelled set: the methods' train draw; the closed form's and BendVLM's words: "
            "`cf_hf/world/attribute_prompts.yaml`). Each method's setting is chosen on the validation galleries by "
            "the rule that chooses α. Mean cut: the mean reduction of MaxSkew and NDKL over the attributes; "
            "labels / prompts / training / reference set at query time: what the method needs (the registry's "
            "`needs`); fit: wall time of fitting the method's whole sweep (for CF_α, see the stage times); "
            "ms / query: measured time to embed one fairness query with the checkpoint, no cache (first seed).",
        ]
        if config.get("bias_alignment"):
            variants = ", ".join(f"`{name}`" for name in config.get("bias_alignment_variants", ["bias_alignment"]))
            lines += ["", "The bias-alignment module (`cf_hf.methods.bias_alignment`, `--bias_alignment`) is trained on "
                      f"the same labelled people, per seed: {variants}."]
        lines += [
            "",
            markdown_table(comparison_header(), comparison),
        ]
    sweep_names = [alpha_key(alpha) for alpha in config["alphas"]]
    method_names = [name for selection in results.get("method_selection", {}).values() for name in selection["candidates"]]
    lines += [
        "",
        "## The α sweep (WiSE-FT), the methods' settings and the ablations",
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
        markdown_table(
            _model_header(), _model_rows(results, [ORIGINAL] + sweep_names + method_names + list(results["ablations"]))
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
        f"- Original CLIP: {_original_text(config)}",
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
