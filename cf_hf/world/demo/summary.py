"""results.json of the demo: every model's numbers over seeds, their reductions, the chosen α and
the targets, in the schema of `cf_hf.evaluation.results`."""

from __future__ import annotations

import json
from dataclasses import asdict

from cf_hf.evaluation.results import ORIGINAL
from cf_hf.interpolation import alpha_key

from ..corpus import ATTRIBUTES
from .ablations import ABLATION_NAMES
from .config import DOWNSTREAM_TOLERANCE, TARGET_REDUCTION, DemoConfig
from .selection import choose_alpha, choose_best, selection_numbers, selection_rule
from .statistics import mean_and_std, reductions


def targets(change: dict) -> dict:
    """Which targets the reductions of the chosen model (`reductions`, means over seeds) meet."""
    met = {
        name: {metric: bool(change[name][metric] >= TARGET_REDUCTION) for metric in ("max_skew", "ndkl")}
        for name in ATTRIBUTES
    }
    met["zero_shot_accuracy_within_1_point"] = bool(change["zero_shot_accuracy_change"] >= -DOWNSTREAM_TOLERANCE)
    met["recall_at_5_within_1_point"] = bool(change["recall_at_5_change"] >= -DOWNSTREAM_TOLERANCE)
    return met


# The methods compared with CF_α, in table order, with their labels.
METHOD_LABELS = {"clip_clip": "CLIP-clip", "biased_prompts": "biased prompts", "closed_form": "closed form",
                 "bendvlm": "BendVLM", "sfid": "SFID", "spd": "SPD", "bias_alignment": "BA module", "bias_alignment_image_cf": "BA + image counterfactuals",
                 "bias_alignment_ba_only": "BA, L_ba only", "bias_alignment_cd_only": "BA, L_cd only"}


def method_candidates(names, method: str) -> list[str]:
    """The models of one fitted method (named `<method>-<setting>=<value>`), in fit order."""
    return [name for name in names if name.startswith(f"{method}-")]


def summarise_methods(config: DemoConfig, original: dict, means: dict, validation: dict | None,
                      method_runs: list[dict]) -> dict:
    """(results.json's `method_selection`: per compared method its candidates, the one chosen on the
    validation sets by the α rule (None when no setting keeps the downstream numbers) and the
    selection numbers; `methods`: per fitted model its record as `cf-hf compare` writes it, with the
    fit time averaged over seeds)."""
    summary, records = {}, {}
    for method in METHOD_LABELS:
        names = method_candidates(means, method)
        if not names:
            continue
        selection_original, candidates, sets = selection_numbers(names, original, means, validation)
        chosen = choose_best(candidates, selection_original, config.downstream_tolerance, None)
        for name in names if method_runs else ():
            records[name] = dict(method_runs[0][name], path=None)
            records[name]["fit_seconds"] = round(sum(run[name]["fit_seconds"] for run in method_runs) / len(method_runs), 3)
        summary[method] = {
            "label": METHOD_LABELS[method], "candidates": names, "chosen": chosen, "sets": sets,
            "reductions": {name: reductions(selection_original, numbers) for name, numbers in candidates.items()},
        }
    return summary, records


def summarise(
    config: DemoConfig, original: dict, floor: dict, per_seed: list[dict], validation: dict | None = None,
    method_runs: list[dict] | None = None,
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
    candidates = [alpha_key(alpha) for alpha in config.alphas]
    selection_original, selection_sweep, sets = selection_numbers(candidates, original, means, validation)
    chosen = choose_alpha(config.alphas, selection_original, selection_sweep, config.downstream_tolerance)
    models = {ORIGINAL: original}
    models.update({alpha_key(alpha): {**means[alpha_key(alpha)], "alpha": float(alpha)} for alpha in config.alphas})
    models.update({name: means[name] for name in names if name in ABLATION_NAMES})
    selection, records = summarise_methods(config, original, means, validation, method_runs or [])
    for method in selection.values():
        models.update({name: means[name] for name in method["candidates"]})
    results = {"models": models, "chosen_alpha": chosen, "method_selection": selection, "methods": records}
    results["alpha_selection"] = {
        "sets": sets,
        "rule": selection_rule(config.downstream_tolerance),
        "reductions": {name: reductions(selection_original, numbers) for name, numbers in selection_sweep.items()},
    }
    results["ablations"] = {name: text for name, text in ABLATION_NAMES.items() if name in names}
    results["std"] = {name: stds[name] for name in names}
    results["reduction"] = changes
    results["random_floor"] = {name: floor[name]["equal_opportunity"] for name in ATTRIBUTES if name in floor}
    results["targets"] = targets(changes[alpha_key(chosen)]["mean"])
    results["seeds"] = config.seeds
    results["per_seed"] = per_seed
    results["config"] = json.loads(json.dumps(asdict(config), default=str))
    return results
