"""Score debiasing methods under one protocol: one results.json, one table, one frontier plot.

`compare(...)` evaluates the original CLIP and every method checkpoint on the same evaluation sets
with `cf_hf.evaluation.evaluate_models`, so the numbers are those `cf-hf evaluate` would give. It
writes what `cf-hf evaluate` writes (results.json in the same schema, with a `methods` section
added; report.md; plots) and puts the comparison first in report.md: per checkpoint MaxSkew and NDKL
per attribute, zero-shot accuracy, R@5, ABLE per attribute and fit time, and a fairness–accuracy
frontier where a method's swept setting (α, kept dimensions, λ) is a curve.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from cf_hf.evaluation.results import ORIGINAL
from cf_hf.methods.checkpoints import MethodCheckpoint
from cf_hf.methods.linear import MethodError
from cf_hf.methods.registry import METHODS, NEEDS

FRONTIER_PLOT = "frontier.png"


def _checkpoints(checkpoints) -> list[MethodCheckpoint]:
    if isinstance(checkpoints, Mapping):
        return [MethodCheckpoint(name=str(name), method=str(name), path=Path(path)) for name, path in checkpoints.items()]
    checkpoints = list(checkpoints)
    names = [checkpoint.name for checkpoint in checkpoints]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise MethodError(f"two checkpoints are named {duplicates}: give them distinct names")
    if ORIGINAL in names:
        raise MethodError(f"{ORIGINAL!r} names the original model; name the checkpoint otherwise")
    return checkpoints


def _attributes(results: dict) -> list[str]:
    galleries = results["protocol"]["fairness"]["galleries"]
    if not galleries:
        return []
    return list(next(iter(galleries.values()))["attributes"])


def _fraction(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _number(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def method_needs(method: str) -> dict[str, bool]:
    """Per entry of `registry.NEEDS`, whether the registered method `method` needs it (all False for the
    original and for checkpoints of no registered method)."""
    spec = METHODS.get(method)
    return {need: spec is not None and need in spec.needs for need in NEEDS}


def needs_cells(method: str) -> list[str]:
    """The table cells of `method_needs`: "yes" or "–", in the order of `NEEDS`."""
    return ["yes" if needed else "–" for needed in method_needs(method).values()]


def measure_query_cost(checkpoint: str | Path, queries: Sequence[str], embedding_config=None, repeats: int = 3) -> float:
    """Milliseconds per query to embed `queries` with `checkpoint` (its text tower, whatever its method does at
    query time: BendVLM's per-query debiasing included), with no embedding cache: the best of `repeats` timed
    passes after one warm-up pass, over the number of queries."""
    import time

    from cf_hf.evaluation.embedding import EmbeddingCache, EmbeddingConfig, EmbeddingEngine

    queries = [str(query) for query in queries]
    if not queries:
        raise MethodError("measure_query_cost: no queries to embed")
    if repeats < 1:
        raise MethodError(f"measure_query_cost: repeats must be >= 1, got {repeats}")
    config = replace(embedding_config or EmbeddingConfig(), cache_dir=None, progress=False)
    engine = EmbeddingEngine.from_pretrained(checkpoint, config=config, cache=EmbeddingCache())
    engine.embed_texts(queries)  # warm-up: first-call allocations
    best = float("inf")
    for _ in range(repeats):
        engine.cache = EmbeddingCache()  # a fresh cache: every pass embeds
        start = time.perf_counter()
        engine.embed_texts(queries)
        best = min(best, time.perf_counter() - start)
    return 1000.0 * best / len(queries)


def fairness_query_texts(fairness, config=None) -> list[str]:
    """The texts of the fairness queries of the first fairness gallery (`fairness`: one gallery, a list or a
    mapping of them),
    as the protocol builds them (its concepts x templates, or the gallery's own captions)."""
    from cf_hf.evaluation import EvaluationConfig
    from cf_hf.evaluation.queries import gallery_queries

    if isinstance(fairness, Mapping):
        fairness = list(fairness.values())
    gallery = fairness[0] if isinstance(fairness, (list, tuple)) else fairness
    config = config or EvaluationConfig()
    return [query.text for query in gallery_queries(gallery, config.fairness)]


def comparison_table(results: dict) -> list[str]:
    """Markdown lines: one row per model, MaxSkew / NDKL and ABLE per attribute, accuracies, what its method
    needs (`registry.NEEDS`), fit time and per-query cost (ms, `measure_query_cost`; – when not measured)."""
    attributes = _attributes(results)
    header = ["model", "method"]
    header += [f"MaxSkew {attribute}" for attribute in attributes] + [f"NDKL {attribute}" for attribute in attributes]
    header += ["zero-shot", "R@5"] + [f"ABLE {attribute}" for attribute in attributes]
    header += list(NEEDS) + ["fit (s)", "ms / query"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, entry in results["models"].items():
        method = results.get("methods", {}).get(name, {})
        row = [name, method.get("method", "")]
        row += [_number(entry.get(attribute, {}).get("max_skew")) for attribute in attributes]
        row += [_number(entry.get(attribute, {}).get("ndkl")) for attribute in attributes]
        row += [_fraction(entry.get("zero_shot_accuracy")), _fraction(entry.get("recall_at_5"))]
        row += [_fraction((entry.get("able") or {}).get(attribute)) for attribute in attributes]
        row += needs_cells(method.get("method", ""))
        row += [f"{method['fit_seconds']:.1f}" if method.get("fit_seconds") else "–"]
        row += [f"{method['query_ms']:.2f}" if method.get("query_ms") is not None else "–"]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _mean_max_skew(entry: dict, attributes: Sequence[str]) -> float | None:
    values = [entry[attribute]["max_skew"] for attribute in attributes if attribute in entry]
    return sum(values) / len(values) if values else None


def plot_frontier(results: dict, path: Path) -> bool:
    """Mean MaxSkew over attributes (x, lower is fairer) against accuracy (y): one marker per
    checkpoint, a line through each method's sweep in the order of its swept setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attributes = _attributes(results)
    accuracy_key = next((key for key in ("zero_shot_accuracy", "recall_at_5")
                         if any(entry.get(key) is not None for entry in results["models"].values())), None)
    if not attributes or accuracy_key is None:
        return False
    methods = results.get("methods", {})
    curves: dict[str, list[tuple[float, float, float, str]]] = {}
    for name, entry in results["models"].items():
        record = methods.get(name, {"method": name})
        skew, accuracy = _mean_max_skew(entry, attributes), entry.get(accuracy_key)
        if skew is None or accuracy is None:
            continue
        swept = record.get("swept")
        order = float(record.get("settings", {}).get(swept, 0)) if swept else 0.0
        curves.setdefault(record.get("method", name), []).append((order, skew, 100 * accuracy, name))
    figure, axis = plt.subplots(figsize=(6.4, 4.4))
    for method, points in curves.items():
        points.sort()
        axis.plot([point[1] for point in points], [point[2] for point in points],
                  marker="*" if method == ORIGINAL else "o", markersize=10 if method == ORIGINAL else 5,
                  label=method)
    axis.set_xlabel(f"mean MaxSkew over {', '.join(attributes)} (lower is fairer)")
    axis.set_ylabel({"zero_shot_accuracy": "zero-shot accuracy (%)", "recall_at_5": "R@5 (%)"}[accuracy_key])
    axis.set_title("fairness–accuracy frontier")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def compare(
    original: str | Path,
    checkpoints: Sequence[MethodCheckpoint] | Mapping[str, str | Path],
    output_dir: str | Path,
    fairness=None,
    retrieval=None,
    zero_shot=None,
    config=None,
    plots: bool = True,
    query_cost: bool = True,
) -> dict:
    """Evaluate `original` and every checkpoint on the same sets; write results.json, report.md, plots.

    Args:
        original: the original CLIP (folder or Hub id), named "original" in the results.
        checkpoints: `MethodCheckpoint`s (from `cf_hf.methods.METHODS`) or name -> checkpoint folder.
        fairness, retrieval, zero_shot, config: as for `cf_hf.evaluation.evaluate_models`.
        query_cost: measure each model's milliseconds per fairness query (`measure_query_cost`, recorded as
            `methods[name]["query_ms"]`); needs `fairness`.

    Returns:
        The results (the schema of `cf-hf evaluate`, plus `methods`: name -> method record).
    """
    from cf_hf.evaluation.protocol import evaluate_models
    from cf_hf.evaluation.report import write_report

    checkpoints = _checkpoints(checkpoints)
    models = {ORIGINAL: str(original), **{checkpoint.name: str(checkpoint.path) for checkpoint in checkpoints}}
    results = evaluate_models(models, fairness, retrieval, zero_shot, config)
    results["methods"] = {ORIGINAL: {"name": ORIGINAL, "method": ORIGINAL, "path": str(original), "settings": {},
                                     "swept": None, "fit_seconds": 0.0}}
    results["methods"].update({checkpoint.name: checkpoint.record() for checkpoint in checkpoints})
    if query_cost and fairness is not None:
        texts = fairness_query_texts(fairness, config)
        embedding = config.embedding if config is not None else None
        for name, path in models.items():
            results["methods"][name]["query_ms"] = round(measure_query_cost(path, texts, embedding), 4)
    output_dir = Path(output_dir)
    written = write_report(results, output_dir, plots=plots)
    frontier = output_dir / "plots" / FRONTIER_PLOT
    has_plot = plots and plot_frontier(results, frontier)
    report = written["report"]
    lines = ["# cf_hf method comparison", "", "Every model scored on the same sets under the protocol below "
             "(headline numbers: first gallery, first desired distribution, main k; MaxSkew and NDKL lower "
             "is fairer; ABLE higher is better).", ""] + comparison_table(results) + [""]
    if has_plot:
        lines += [f"![frontier](plots/{FRONTIER_PLOT})", ""]
    report.write_text("\n".join(lines) + "\n" + report.read_text(encoding="utf-8"), encoding="utf-8")
    return results
