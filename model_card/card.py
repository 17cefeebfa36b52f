"""Model cards for the CF_alpha checkpoints: `render_model_card(...)` → README.md text.

The card is `template.md` filled in with: YAML metadata (`library_name`, `pipeline_tag`,
`base_model`, `datasets`, `tags`, and a `model-index` holding the measured metrics of this
checkpoint), what α means, the measured results, the α-sweep table (and plot) when the results hold
several models, the training details given, intended use, limitations and how to load it.

Results come from a `results.json` of `cf-hf evaluate` or `cf-hf demo`, read by the one reader of
that schema (`cf_hf.evaluation.results.load_results`): per model the per-attribute MaxSkew, MinSkew
and NDKL (means over queries at `fairness_k`) and the downstream `zero_shot_accuracy` and
`recall_at_5`. A checkpoint's numbers are those of the model with its α (α = 0: the original when
no `alpha=0` model was evaluated). Any number may be missing: it is left out of the card (or shown
as "—" in a table row), never invented.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from string import Template

import yaml

from cf_hf.evaluation.results import METRIC_LABELS, ModelResults, Results, load_results, parse_results

TEMPLATE_PATH = Path(__file__).resolve().parent / "template.md"
PAPER = "They're All Doctors: Synthesizing Diverse Counterfactuals to Mitigate Associative Bias (arXiv 2406.11331)"
PAPER_URL = "https://arxiv.org/abs/2406.11331"
DEFAULT_TAGS = ("clip", "fairness", "debiasing", "counterfactual", "wise-ft", "cf_hf")
DOWNSTREAM_METRICS = {"zero_shot_accuracy": "Zero-shot accuracy", "recall_at_5": "Recall@5"}
# Where each kind of metric was measured, for the model-index (names of the evaluation sets).
DEFAULT_EVALUATION_DATASETS = {
    "fairness": {"name": "Attribute-labelled person gallery", "type": "fairness-gallery"},
    "zero_shot_accuracy": {"name": "Zero-shot classification set", "type": "zero-shot-classification"},
    "recall_at_5": {"name": "Image-text retrieval set", "type": "image-text-retrieval"},
}


def _format(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def as_results(results: Results | Mapping | str | Path | None) -> Results | None:
    """`results` as a `Results`: a results.json path, its parsed content, or a `Results` already."""
    if results is None or isinstance(results, Results):
        return results
    if isinstance(results, (str, Path)):
        return load_results(results)
    return parse_results(results)


def _metric_label(name: str, k: int | None = None) -> str:
    if "/" in name:
        attribute, metric = name.split("/", 1)
        return f"{METRIC_LABELS[metric]}{'' if k is None else f'@{k}'} ({attribute})"
    return DOWNSTREAM_METRICS[name]


def model_index(model_name: str, metrics: Mapping[str, float], evaluation_datasets: Mapping | None = None,
                fairness_k: int | None = None) -> list:
    """The `model-index` metadata: one result per evaluation set, holding only measured metrics
    (fairness metrics at `fairness_k`, recorded in their name and `args`)."""
    datasets = {**DEFAULT_EVALUATION_DATASETS, **(evaluation_datasets or {})}
    results = []
    fairness = [
        {"type": name.split("/", 1)[1], "name": _metric_label(name, fairness_k), "value": value}
        | ({"args": {"k": fairness_k}} if fairness_k is not None else {})
        for name, value in metrics.items()
        if "/" in name
    ]
    if fairness:
        results.append({
            "task": {"type": "zero-shot-image-classification", "name": "Fairness of text-to-image retrieval"},
            "dataset": dict(datasets["fairness"]),
            "metrics": fairness,
        })
    tasks = {"zero_shot_accuracy": ("zero-shot-image-classification", "Zero-shot image classification", "accuracy"),
             "recall_at_5": ("zero-shot-image-classification", "Text-image retrieval", "recall")}
    for name, (task_type, task_name, metric_type) in tasks.items():
        if name in metrics:
            results.append({
                "task": {"type": task_type, "name": task_name},
                "dataset": dict(datasets[name]),
                "metrics": [{"type": metric_type, "name": DOWNSTREAM_METRICS[name], "value": metrics[name]}],
            })
    return [{"name": model_name, "results": results}] if results else []


def _metrics_table(models: Sequence[ModelResults], highlight: str | None = None) -> str:
    """A Markdown table, one row per model, one column per metric measured for any of them."""
    rows = {model.name: model.metrics() for model in models}
    k = next((model.fairness_k for model in models if model.fairness_k is not None), None)
    columns = []
    for metrics in rows.values():
        columns += [name for name in metrics if name not in columns]
    columns.sort(key=lambda name: (name not in DOWNSTREAM_METRICS, name))
    header = "| model | " + " | ".join(_metric_label(name, k) for name in columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 1)]
    for key, metrics in rows.items():
        label = f"**{key}** (this checkpoint)" if key == highlight else key
        lines.append(f"| {label} | " + " | ".join(_format(metrics.get(name)) for name in columns) + " |")
    return "\n".join(lines)


ALPHA_SECTION = """## What α means

This checkpoint is one member of the CF_α family: the WiSE-FT interpolation
`θ_α = (1 − α) · θ_original + α · θ_fine-tuned` of every floating-point weight, between
the original CLIP (`{base_model}`, α = 0) and the same model fine-tuned on counterfactual images
(α = 1). Smaller α keeps more of the original model's behaviour (and its biases); larger α moves
towards the debiased fine-tuned model. **This checkpoint: α = {alpha_text}.**
"""
PLAIN_LOAD_NOTE = ("No `cf_hf` import and no `trust_remote_code` are needed: this is a standard `transformers` CLIP\n"
                   "checkpoint.")
# What a method checkpoint needs when it embeds, by its model type (a method's record may say more).
QUERY_TIME_NEEDS = {
    "clip": "nothing beyond this checkpoint: the method's linear map is folded into the projections",
    "clip_embedding_transform": "nothing beyond this checkpoint: its stored affine map is applied to every embedding",
}


def _load_code(repo_id: str | None, revision: str | None, model_type: str = "clip") -> str:
    target = json.dumps(repo_id or "path/to/checkpoint")
    extra = f", revision={json.dumps(revision)}" if revision else ""
    if model_type != "clip":
        return (
            "from transformers import AutoModel, AutoProcessor\n\n"
            "from cf_hf.methods import register_model_types\n\n"
            "register_model_types()  # cf_hf's model classes, registered with the Auto classes\n"
            f"model = AutoModel.from_pretrained({target}{extra})\n"
            f"processor = AutoProcessor.from_pretrained({target}{extra})"
        )
    return (
        "from transformers import CLIPModel, CLIPProcessor\n\n"
        f"model = CLIPModel.from_pretrained({target}{extra})\n"
        f"processor = CLIPProcessor.from_pretrained({target}{extra})"
    )


def _method_section(method: Mapping, model_type: str) -> str:
    """The card section of a method checkpoint: the method, its settings, what it needs at query time."""
    rows = {"method": method.get("method"), **(method.get("settings") or {})}
    fitted_on = method.get("fitted_on") or {}
    rows.update({f"fitted on: {key}": value for key, value in fitted_on.items()
                 if key in ("reference", "reference_size", "prompts_file", "values", "gallery", "concepts")})
    table = "\n".join(f"| {key} | {value} |" for key, value in rows.items())
    needs = method.get("query_time") or QUERY_TIME_NEEDS.get(model_type)
    section = f"## The debiasing method\n\n| setting | value |\n|---|---|\n{table}\n"
    if needs:
        section += f"\n**At query time** it needs {needs}.\n"
    return section


def is_repo_id(name: str | None) -> bool:
    """Whether `name` names a Hub repo rather than a local folder: a valid repo id that is not an
    existing path and does not start like one (`../original`, `/data/clip`)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not name or name.startswith((".", "/")) or Path(name).exists():
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def render_model_card(
    *,
    alpha: float | None,
    base_model: str,
    results: Results | Mapping | str | Path | None = None,
    datasets: Sequence[str] = (),
    repo_id: str | None = None,
    revision: str | None = None,
    model_name: str | None = None,
    training: Mapping | None = None,
    sweep_plot: str | None = None,
    family: Mapping[str, str] | None = None,
    tags: Sequence[str] = DEFAULT_TAGS,
    license: str | None = None,
    evaluation_datasets: Mapping | None = None,
    method: Mapping | None = None,
    model_type: str = "clip",
) -> str:
    """The README.md of one CF_alpha checkpoint, or of a debiasing method's checkpoint (`method`).

    Args:
        alpha: this checkpoint's α (0 = original, 1 = fine-tuned), or None for a card that is not
            part of an α family.
        base_model: the original CLIP: a Hub id (written to the `base_model` metadata) or a local
            path (named in the text only: the Hub accepts only repo ids there).
        results: a results.json of `cf-hf evaluate` or `cf-hf demo` (its path, its content or a
            `Results`; see module docstring); missing → no numbers.
        datasets: Hub ids of the fine-tuning datasets.
        repo_id, revision: where the checkpoint is published, for "How to load".
        model_name: the model-index name (default: `repo_id`, else "CF_α CLIP").
        training: training details to list (name → value), e.g. the training arguments.
        sweep_plot: path (inside the repo) of an α-sweep plot image to show.
        family: α label → revision (or repo id) of the other checkpoints of the family, to list them.
        tags, license: metadata.
        evaluation_datasets: names of the evaluation sets for the model-index, per kind
            (`fairness`, `zero_shot_accuracy`, `recall_at_5`: {"name", "type"}).
        method: the record a cf_hf method wrote into the checkpoint's config (`cf_hf_method`: method,
            settings, fitted_on, query_time): the card then describes that method instead of α.
        model_type: the checkpoint's model type; anything but `clip` loads through `AutoModel` with cf_hf.
    """
    alpha_text = "—" if alpha is None else f"{float(alpha):g}"
    model_name = model_name or repo_id or (method.get("name") if method else f"CF_α CLIP (α = {alpha_text})")
    results = as_results(results)
    own_model = results.model_for_alpha(alpha) if results is not None and alpha is not None else None
    own = own_model.metrics() if own_model is not None else {}
    fairness_k = own_model.fairness_k if own_model is not None else None
    metadata = {"library_name": "transformers", "pipeline_tag": "zero-shot-image-classification"}
    if license:
        metadata["license"] = license
    if is_repo_id(base_model):
        metadata["base_model"] = base_model
    if datasets:
        metadata["datasets"] = list(datasets)
    metadata["tags"] = list(tags)
    if index := model_index(model_name, own, evaluation_datasets, fairness_k):
        metadata["model-index"] = index

    if method:
        summary = (f"`{base_model}` debiased with the `{method.get('method')}` method "
                   f"({method.get('name', method.get('method'))}). Built with `cf_hf`.")
    else:
        summary = (
            f"A CLIP model debiased with counterfactual fine-tuning, as described in [{PAPER}]({PAPER_URL}), "
            f"and interpolated with its original model at α = {alpha_text}. Built with `cf_hf`."
        )
    if datasets:
        summary += " Fine-tuned on " + ", ".join(f"[{d}](https://huggingface.co/datasets/{d})" for d in datasets) + "."

    results_section = ""
    if own:
        at_k = "" if fairness_k is None else f" at k = {fairness_k}"
        results_section = (
            f"\n## Results\n\nMeasured for this checkpoint (fairness: mean over queries{at_k}, lower |skew| and "
            "NDKL are fairer):\n\n" + _metrics_table([own_model]) + "\n"
        )
    sweep_section = ""
    members = list(results.sweep().values()) if results is not None else []
    if len(members) >= 2:
        highlight = own_model.name if own_model is not None else None
        sweep_section = "\n## The α sweep\n\nMeasured for every checkpoint of the family:\n\n" + _metrics_table(
            members, highlight
        ) + "\n"
        if sweep_plot:
            sweep_section += f"\n![Fairness and accuracy across α]({sweep_plot})\n"
    if family:
        sweep_section += "\n### Other members of the family\n\n" + "\n".join(
            f"- α = {label}: `{where}`" for label, where in family.items()
        ) + "\n"
    training_section = ""
    if training:
        rows = "\n".join(f"| {key} | {value} |" for key, value in training.items())
        training_section = f"\n## Training details\n\n| setting | value |\n|---|---|\n{rows}\n"

    template = Template(TEMPLATE_PATH.read_text(encoding="utf-8"))
    return template.substitute(
        metadata=yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True).rstrip("\n"),
        title=f"CF_α CLIP, α = {alpha_text}" if alpha is not None and not method else model_name,
        summary=summary,
        base_model=base_model,
        alpha_section=(_method_section(method, model_type) if method
                       else ALPHA_SECTION.format(base_model=base_model, alpha_text=alpha_text)),
        results_section=results_section,
        sweep_section=sweep_section,
        training_section=training_section,
        load_code=_load_code(repo_id, revision, model_type),
        load_note=(PLAIN_LOAD_NOTE if model_type == "clip" else
                   f"Needs `cf_hf` installed: `model_type: {model_type}` is cf_hf's own model class, registered with "
                   "the Auto classes (no `trust_remote_code`). `CLIPModel.from_pretrained` on this folder loads "
                   "the CLIP without the method."),
    )
