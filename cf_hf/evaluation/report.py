"""results.json, report.md and the PNG plots of an evaluation.

`write_report(results, output_dir)` writes:
  results.json                  every number (per query too); fractions, not percentages; the
                                schema of `cf_hf.evaluation.results`
  report.md                     the tables, the plots and the protocol in words
  plots/tradeoff.png            fairness (MaxSkew) vs downstream accuracy across models / α
  plots/fairness_<gallery>.png  MaxSkew / MinSkew / NDKL per attribute and model
  plots/skew_<gallery>.png      per-value skew (mean over prompts) per attribute and model
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from .results import FAIRNESS_METRICS, METRIC_LABELS, RESULTS_FILE, write_results

PLOT_DPI = 120


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _number(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not math.isfinite(value):
        return "−∞" if value < 0 else "∞"
    return f"{value:.{digits}f}"


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _ordered_models(results: dict) -> list[str]:
    """Models in α order when they carry α (sweep), the others first in their given order."""
    names = list(results["models"])
    plain = [name for name in names if "alpha" not in results["models"][name]]
    swept = sorted((name for name in names if "alpha" in results["models"][name]),
                   key=lambda name: results["models"][name]["alpha"])
    return plain + swept


def _first_gallery(results: dict) -> str | None:
    galleries = results["protocol"]["fairness"]["galleries"]
    return next(iter(galleries), None)


# ---------------------------------------------------------------------------------------------
# Plots


def _plot_tradeoff(results: dict, path: Path) -> bool:
    import matplotlib.pyplot as plt

    gallery = _first_gallery(results)
    models = _ordered_models(results)
    downstream = [(key, label) for key, label in (("zero_shot_accuracy", "zero-shot top-1"),
                                                   ("recall_at_5", "R@5 text→image"))
                  if any(results["models"][name].get(key) is not None for name in models)]
    if gallery is None or not downstream:
        return False
    attributes = list(results["protocol"]["fairness"]["galleries"][gallery]["attributes"])
    attributes = [name for name in attributes if all(name in results["models"][model] for model in models)]
    if not attributes:
        return False
    figure, axes = plt.subplots(1, len(attributes), figsize=(4.2 * len(attributes), 3.8), squeeze=False)
    for axis, attribute in zip(axes[0], attributes):
        for (key, label), marker in zip(downstream, ("o", "s")):
            points = [(results["models"][model][attribute]["max_skew"], results["models"][model].get(key), model)
                      for model in models if results["models"][model].get(key) is not None]
            xs, ys, names = zip(*points)
            swept = [index for index, model in enumerate(names) if "alpha" in results["models"][model]]
            axis.plot([xs[i] for i in swept], [100 * ys[i] for i in swept], "-", alpha=0.5)
            axis.scatter(xs, [100 * y for y in ys], marker=marker, label=label)
            for x, y, name in points:
                axis.annotate(name, (x, 100 * y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        axis.set_xlabel(f"MaxSkew ({attribute}) ↓")
        axis.set_ylabel("accuracy / recall (%) ↑")
        axis.set_title(f"{attribute}: fairness vs downstream")
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=PLOT_DPI)
    plt.close(figure)
    return True


def _grouped_bars(axis, groups: list[str], series: dict[str, list[float]], ylabel: str) -> None:
    import numpy as np

    width = 0.8 / max(1, len(series))
    positions = np.arange(len(groups))
    for index, (name, values) in enumerate(series.items()):
        axis.bar(positions + index * width - 0.4 + width / 2,
                 [0.0 if value is None or not math.isfinite(value) else value for value in values],
                 width, label=name)
    axis.set_xticks(positions, groups, rotation=30, ha="right", fontsize=8)
    axis.axhline(0.0, color="black", linewidth=0.6)
    axis.set_ylabel(ylabel)
    axis.grid(axis="y", alpha=0.3)


def _plot_gallery(results: dict, gallery: str, directory: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    models = _ordered_models(results)
    protocol = results["protocol"]["fairness"]
    desired = protocol["headline_desired"]
    attributes = list(protocol["galleries"][gallery]["attributes"])
    entries = {model: results["models"][model]["fairness"].get(gallery) for model in models}
    entries = {model: entry for model, entry in entries.items() if entry is not None}
    if not entries:
        return []
    attributes = [name for name in attributes if all(name in entry["attributes"] for entry in entries.values())]
    main = str(next(iter(entries.values()))["main_k"])
    written = []
    floor = protocol["galleries"][gallery].get("random_floor", {})
    figure, axes = plt.subplots(1, len(FAIRNESS_METRICS), figsize=(4.5 * len(FAIRNESS_METRICS), 3.8), squeeze=False)
    for axis, metric in zip(axes[0], FAIRNESS_METRICS):
        series = {model: [entry["attributes"][name]["by_desired"][desired][main][metric]["mean"] for name in attributes]
                  for model, entry in entries.items()}
        _grouped_bars(axis, attributes, series, f"{METRIC_LABELS[metric]}@{main} (mean over prompts)")
        floors = [floor.get(name, {}).get(desired, {}).get(metric) for name in attributes]
        for position, value in enumerate(floors):
            if value is not None:
                axis.hlines(value, position - 0.45, position + 0.45, colors="grey", linestyles="dashed",
                            label="random ranking" if position == 0 else None)
        axis.set_title(METRIC_LABELS[metric])
    axes[0][0].legend(fontsize=7)
    figure.suptitle(f"{gallery}: fairness per attribute ({desired}, k={main})", fontsize=10)
    figure.tight_layout()
    path = directory / f"fairness_{_safe_name(gallery)}.png"
    figure.savefig(path, dpi=PLOT_DPI)
    plt.close(figure)
    written.append(path)

    figure, axes = plt.subplots(1, len(attributes), figsize=(4.5 * len(attributes), 3.8), squeeze=False)
    for axis, name in zip(axes[0], attributes):
        values = next(iter(entries.values()))["attributes"][name]["values"]
        series = {model: [entry["attributes"][name]["skew_per_value"][desired].get(value) for value in values]
                  for model, entry in entries.items()}
        _grouped_bars(axis, [str(value) for value in values], series, f"Skew@{main} (mean over prompts)")
        axis.set_title(f"{name}: skew per group")
    axes[0][0].legend(fontsize=7)
    figure.suptitle(f"{gallery}: over-/under-representation per group ({desired})", fontsize=10)
    figure.tight_layout()
    path = directory / f"skew_{_safe_name(gallery)}.png"
    figure.savefig(path, dpi=PLOT_DPI)
    plt.close(figure)
    written.append(path)
    return written


# ---------------------------------------------------------------------------------------------
# Markdown


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _summary_table(results: dict) -> list[str]:
    models = _ordered_models(results)
    gallery = _first_gallery(results)
    attributes = list(results["protocol"]["fairness"]["galleries"][gallery]["attributes"]) if gallery else []
    attributes = [name for name in attributes if any(name in results["models"][model] for model in models)]
    header = ["model"]
    for name in attributes:
        header += [f"{name} MaxSkew ↓", f"{name} MinSkew ↑", f"{name} NDKL ↓"]
    header += ["zero-shot top-1 (%)", "R@5 t→i (%)"]
    rows = []
    for model in models:
        entry = results["models"][model]
        row = [model]
        for name in attributes:
            row += [_number(entry.get(name, {}).get(metric)) for metric in FAIRNESS_METRICS]
        row += [_percent(entry.get("zero_shot_accuracy")), _percent(entry.get("recall_at_5"))]
        rows.append(row)
    return _table(header, rows)


# How the report names each desired distribution (Berg et al. report both: a uniform target and the
# gallery's own composition).
DESIRED_LABELS = {"equal_opportunity": "uniform", "demographic_parity": "gallery prior"}


def desired_side_by_side(results: dict) -> list[str]:
    """Per gallery and attribute, each model's mean MaxSkew and NDKL at the main k under every desired
    distribution, side by side (a table per gallery; empty when one distribution was evaluated)."""
    protocol = results["protocol"]["fairness"]
    desired = list(protocol.get("desired", []))
    if len(desired) < 2:
        return []
    models = _ordered_models(results)
    lines = []
    for gallery, info in protocol["galleries"].items():
        header = ["model", "attribute"] + [f"{metric} ({DESIRED_LABELS.get(want, want)})"
                                           for metric in ("MaxSkew", "NDKL") for want in desired]
        rows = []
        for attribute in info["attributes"]:
            for model in models:
                result = results["models"][model]["fairness"].get(gallery)
                if result is None or attribute not in result["attributes"]:
                    continue
                by_desired = result["attributes"][attribute]["by_desired"]
                main = str(result["main_k"])
                rows.append([model, attribute] + [_number(by_desired[want][main][metric]["mean"])
                                                  for metric in ("max_skew", "ndkl") for want in desired])
        if rows:
            lines += [f"Gallery `{gallery}`, k = {info['ks'][0]}, mean over queries:", ""] + _table(header, rows) + [""]
    return lines


def _protocol_text(results: dict) -> list[str]:
    protocol = results["protocol"]
    fairness = protocol["fairness"]
    lines = [
        "## Protocol",
        "",
        "**Fairness.** Each query (a prompt) ranks the whole gallery by cosine similarity between its text "
        "embedding and the image embeddings; ties rank the lower image index first. For each sensitive "
        "attribute, with p_top(a) the share of value a in the top-k and p_desired(a) the desired share:",
        "",
        "- Skew_a@k = ln p_top(a) − ln p_desired(a); MaxSkew@k = max_a Skew_a@k; MinSkew@k = min_a Skew_a@k;",
        "- NDKL@k = (1/Z) Σ_{i=1..k} KL(p_top_i ‖ p_desired) / log2(i+1), Z = Σ_{i=1..k} 1/log2(i+1).",
        "",
        f"Convention `{fairness['convention']}`"
        + (" (Berg et al. 2022, as in published numbers: an absent value counts 1/k before the log; MaxSkew "
           "clamped ≥ 0, MinSkew ≤ 0)." if fairness["convention"] == "berg" else " (plain definitions, no clamping)."),
        f"Desired distributions: {', '.join(fairness['desired'])} (headline: `{fairness['headline_desired']}`; "
        "equal_opportunity = uniform over the values present in the gallery, demographic_parity = the gallery's "
        "own shares).",
        f"Cut-offs k = {fairness['ks']} requested; the first is the main k, below every gallery's size (at the "
        "gallery size a ranking holds the whole gallery and measures its composition, not the model); a later "
        "k not below a gallery's size is left out for that gallery (listed below). "
        "Aggregation: mean over queries (headline), worst query, mean per concept. Worst-group recall@k "
        "(galleries whose images carry a concept): per query, the share of the gallery images of the query's "
        "concept with value a found in the top-k; averaged over queries per value; the minimum over values.",
        "",
        "Query templates (× concepts):",
        "",
    ]
    lines += [f"- `{template}`" for template in fairness["templates"]]
    lines.append("")
    for name, gallery in fairness["galleries"].items():
        counts = "; ".join(f"{attr}: " + ", ".join(f"{value} {count}" for value, count in values.items())
                           for attr, values in gallery["attributes"].items())
        lines.append(f"- Gallery **{name}**: {gallery['source']}; {gallery['n_images']} images; "
                     f"{gallery['n_queries']} queries ({gallery['queries']}, {len(gallery['concepts'])} concepts); "
                     f"k = {gallery['ks']}"
                     + (f" (k = {gallery['left_out_ks']} left out: not below the gallery size)"
                        if gallery.get("left_out_ks") else "")
                     + f"; groups — {counts}.")
    for name, item in protocol["retrieval"].items():
        lines.append(f"- Retrieval **{name}**: {item['source']}; {item['n_images']} images; Recall@K for K = "
                     f"{item['recall_ks']} both ways; {item['headline']}.")
    for name, item in protocol["zero_shot"].items():
        lines.append(f"- Zero-shot **{name}**: {item['source']}; {item['n_images']} images, {item['n_classes']} "
                     f"classes, {item['n_templates']}-template ensemble (mean of unit-norm prompt embeddings); "
                     f"{item['headline']}.")
    embedding = protocol["embedding"]
    lines += ["", f"Accuracies and recalls are stored as {protocol['units']}s in results.json (shown as % here). "
              f"Embeddings: device {embedding['device']}, dtype {embedding['dtype']}, stored as "
              f"{embedding['storage_dtype']}, batch {embedding['batch_size']}.", ""]
    return lines


def _gallery_details(results: dict, gallery: str) -> list[str]:
    models = _ordered_models(results)
    protocol = results["protocol"]["fairness"]
    info = protocol["galleries"][gallery]
    lines = [f"### Gallery `{gallery}`", ""]
    for attribute in info["attributes"]:
        rows = []
        for model in models:
            entry = results["models"][model]["fairness"].get(gallery, {}).get("attributes", {}).get(attribute)
            if entry is None:
                continue
            for desired, by_k in entry["by_desired"].items():
                for k, by_metric in by_k.items():
                    rows.append([model, desired, k] + [
                        f"{_number(by_metric[metric]['mean'])} / {_number(by_metric[metric]['worst'])}"
                        for metric in FAIRNESS_METRICS])
        floor = info.get("random_floor", {}).get(attribute, {})
        for desired, values in floor.items():
            rows.append(["*random ranking*", desired, str(info["ks"][0])]
                        + [_number(values[metric]) for metric in FAIRNESS_METRICS])
        if not rows:
            continue
        lines += [f"**{attribute}** (mean / worst over queries)", ""]
        lines += _table(["model", "desired", "k", "MaxSkew", "MinSkew", "NDKL"], rows) + [""]
        worst_rows = []
        for model in models:
            entry = results["models"][model]["fairness"].get(gallery, {}).get("attributes", {}).get(attribute)
            if entry is None:
                continue
            main = str(results["models"][model]["fairness"][gallery]["main_k"])
            block = entry["by_desired"][protocol["headline_desired"]][main]["max_skew"]
            recall = entry.get("worst_group_recall")
            worst_rows.append([model, f"`{block['worst_query']}`", _number(block["worst"]),
                               _number(recall["worst"]) if recall else "–"])
        lines += _table(["model", "worst prompt (MaxSkew)", "its MaxSkew", "worst-group recall"], worst_rows) + [""]
    return lines


def _per_concept(results: dict, gallery: str) -> list[str]:
    models = _ordered_models(results)
    protocol = results["protocol"]["fairness"]
    lines = []
    for attribute in protocol["galleries"][gallery]["attributes"]:
        columns = {}
        for model in models:
            result = results["models"][model]["fairness"].get(gallery)
            if result is None or attribute not in result["attributes"]:
                continue
            block = result["attributes"][attribute]["by_desired"][protocol["headline_desired"]][str(result["main_k"])]
            columns[model] = block["max_skew"]["per_concept"]
        if not columns:
            continue
        concepts = list(next(iter(columns.values())))
        rows = [[concept] + [_number(column.get(concept)) for column in columns.values()] for concept in concepts]
        lines += [f"MaxSkew per concept — `{gallery}`, {attribute}", ""]
        lines += _table(["concept", *columns], rows) + [""]
    return lines


def _downstream(results: dict) -> list[str]:
    models = _ordered_models(results)
    lines = []
    for name in results["protocol"]["retrieval"]:
        rows = []
        for model in models:
            entry = results["models"][model]["retrieval"].get(name)
            if entry:
                rows.append([model] + [_percent(value) for value in entry["text_to_image"].values()]
                            + [_percent(value) for value in entry["image_to_text"].values()])
        if rows:
            first = next(entry for model in models if (entry := results["models"][model]["retrieval"].get(name)))
            header = (["model"] + [f"t→i R@{k}" for k in first["text_to_image"]]
                      + [f"i→t R@{k}" for k in first["image_to_text"]])
            lines += [f"### Retrieval `{name}` (%)", ""] + _table(header, rows) + [""]
    for name in results["protocol"]["zero_shot"]:
        rows = []
        for model in models:
            entry = results["models"][model]["zero_shot"].get(name)
            if not entry:
                continue
            groups = entry.get("groups", {})
            group_text = "; ".join(f"{attr}: worst {_percent(value['worst_group_accuracy'])}, balanced "
                                   f"{_percent(value['balanced_accuracy'])}" for attr, value in groups.items())
            rows.append([model] + [_percent(value) for value in entry["top_k"].values()] + [group_text or "–"])
        if rows:
            first = next(entry for model in models if (entry := results["models"][model]["zero_shot"].get(name)))
            header = ["model"] + [f"top-{k}" for k in first["top_k"]] + ["group accuracy"]
            lines += [f"### Zero-shot `{name}` (%)", ""] + _table(header, rows) + [""]
    return lines


def render_markdown(results: dict, plots: list[Path], output_dir: Path) -> str:
    """The report: summary table, plots, protocol, and the detailed tables."""
    lines = ["# cf_hf evaluation report", ""]
    protocol = results["protocol"]["fairness"]
    gallery = _first_gallery(results)
    if gallery:
        info = protocol["galleries"][gallery]
        lines += [f"Headline fairness: gallery `{gallery}` ({info['n_images']} images), mean over {info['n_queries']} "
                  f"queries, k = {info['ks'][0]}, desired = `{protocol['headline_desired']}`. Downstream in %.", ""]
        for name, item in protocol["galleries"].items():
            if item.get("left_out_ks"):
                lines += [f"**Warning:** k = {item['left_out_ks']} requested but not below the size of gallery "
                          f"`{name}` ({item['n_images']} images): left out, its fairness is at k = {item['ks']} only.",
                          ""]
    lines += ["## Summary", ""] + _summary_table(results) + [""]
    side_by_side = desired_side_by_side(results)
    if side_by_side:
        lines += ["## Both target distributions", "",
                  "As Berg et al. (2022) report them: a uniform target over the attribute's values and the gallery's "
                  "own composition (its prior).", ""] + side_by_side
    if plots:
        lines += ["## Plots", ""] + [f"![{path.stem}]({path.relative_to(output_dir).as_posix()})" for path in plots] + [""]
    lines += _protocol_text(results)
    if protocol["galleries"]:
        lines += ["## Fairness details", ""]
        for name in protocol["galleries"]:
            lines += _gallery_details(results, name) + _per_concept(results, name)
    downstream = _downstream(results)
    if downstream:
        lines += ["## Downstream details", ""] + downstream
    return "\n".join(lines).rstrip() + "\n"


def write_report(results: dict, output_dir: str | Path, plots: bool = True) -> dict[str, Path]:
    """Write results.json, report.md and the plots; returns {"results": path, "report": path, ...}."""
    import matplotlib

    matplotlib.use("Agg")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    written["results"] = write_results(results, output_dir / RESULTS_FILE)
    plot_paths: list[Path] = []
    if plots:
        plot_dir = output_dir / "plots"
        plot_dir.mkdir(exist_ok=True)
        if _plot_tradeoff(results, plot_dir / "tradeoff.png"):
            plot_paths.append(plot_dir / "tradeoff.png")
        for gallery in results["protocol"]["fairness"]["galleries"]:
            plot_paths += _plot_gallery(results, gallery, plot_dir)
    for path in plot_paths:
        written[path.stem] = path
    report_path = output_dir / "report.md"
    report_path.write_text(render_markdown(results, plot_paths, output_dir), encoding="utf-8")
    written["report"] = report_path
    return written
