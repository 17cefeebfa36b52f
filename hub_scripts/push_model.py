"""Publish CF_alpha checkpoints: **one Hub repo, one branch per alpha**.

Layout on the Hub, for `--repo_id org/cf-clip` and a sweep with alphas 0, 0.5 and 1:

    org/cf-clip @ alpha-0     the checkpoint with alpha = 0 (+ its model card)
    org/cf-clip @ alpha-0.5   ...
    org/cf-clip @ alpha-1
    org/cf-clip @ main        a copy of the default alpha (`--default_alpha`, else the largest)

so `CLIPModel.from_pretrained("org/cf-clip")` gives the default checkpoint and
`CLIPModel.from_pretrained("org/cf-clip", revision="alpha-0.5")` any other. Why branches rather than
one repo per alpha: the family stays one model page with one history, the card of `main` lists
every member, and nothing else has to be named; branch names are the sweep folder names
(`alpha-<%g>`, see `cf_hf.interpolation`).

Each checkpoint gets a model card (see `model_card`) with its alpha, the measured results from a
`results.json` of `cf-hf evaluate --sweep` or `cf-hf demo` (never an unmeasured number) and the
sweep table. A results file that holds none of the pushed α's is refused (it would publish cards
without numbers); α's it lacks are named in a warning; one that measured other weights (another sweep's
members, by the fingerprints `cf-hf evaluate` records) is refused, wherever either sweep folder now lies. Each branch is one commit; re-pushing
unchanged content makes none.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from cf_hf.evaluation.results import Results
from hub_scripts._common import HubPushError, PlannedPush, check_repo_id, run_pushes

logger = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
SWEEP_PLOT_NAME = "sweep.png"
# Config fields that record how a cf_hf checkpoint was trained, listed on the card when present.
TRAINING_CONFIG_FIELDS = ("beta_clip", "beta_cf", "cf_temperature", "clip_group_positives")


def check_checkpoint(folder: str | Path) -> Path:
    """A folder `from_pretrained` can load: config.json with a model_type, and weights."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HubPushError(f"{folder} is not a folder")
    config = folder / "config.json"
    if not config.is_file():
        raise HubPushError(f"{folder} is not a model checkpoint: it has no config.json (save it with save_pretrained)")
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except ValueError as error:
        raise HubPushError(f"{config} is not valid JSON: {error}") from None
    if not model_type:
        raise HubPushError(f"{config} has no model_type: not a transformers checkpoint")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise HubPushError(f"{folder} is not a model checkpoint: no weights ({', '.join(WEIGHT_FILES[::2])})")
    return folder


def find_checkpoints(path: str | Path) -> dict[float | None, Path]:
    """alpha → checkpoint folder: every member of a sweep folder, or one checkpoint (alpha from its
    interpolation.json, else None)."""
    from cf_hf.interpolation import INTERPOLATION_FILE, SWEEP_FILE

    path = Path(path)
    sweep_file = path / SWEEP_FILE
    if sweep_file.is_file():
        entries = json.loads(sweep_file.read_text()).get("alphas", [])
        if not entries or not all(isinstance(e, dict) and "alpha" in e and "path" in e for e in entries):
            raise HubPushError(f"{sweep_file} must list 'alphas': [{{'alpha': ..., 'path': ...}}, ...]")
        alphas = [float(entry["alpha"]) for entry in entries]
        if len(set(alphas)) != len(alphas):
            raise HubPushError(f"{sweep_file} lists an alpha twice: {alphas}")
        return {float(e["alpha"]): check_checkpoint(path / e["path"]) for e in entries}
    folder = check_checkpoint(path)
    record = folder / INTERPOLATION_FILE
    alpha = json.loads(record.read_text()).get("alpha") if record.is_file() else None
    return {None if alpha is None else float(alpha): folder}


def _checked_results(results: Results | dict | str | Path | None, alphas: list[float]) -> Results | None:
    """The results for the cards (`model_card.as_results`), refused when they hold none of `alphas`."""
    from cf_hf.evaluation.results import ResultsError
    from model_card import as_results

    try:
        results = as_results(results)
    except ResultsError as error:
        raise HubPushError(str(error)) from None
    if results is None or not alphas:
        return results
    missing = [alpha for alpha in alphas if results.model_for_alpha(alpha) is None]
    listed = ", ".join(f"{alpha:g}" for alpha in missing)
    if len(missing) == len(alphas):
        raise HubPushError(
            f"{results.source} holds no numbers for any pushed α ({listed}); its models are {list(results.models)}. "
            "Evaluate the sweep folder itself (`cf-hf evaluate --sweep SWEEP --model original=ORIGINAL ...`) and "
            "pass that results.json, or leave out --results"
        )
    if missing:
        logger.warning("%s holds no numbers for α = %s: their cards show none", results.source, listed)
    return results


def _check_results_measured_these_checkpoints(results: Results | None, checkpoints: dict[float | None, Path]) -> None:
    """Refuse results whose entry for a pushed α measured another checkpoint.

    `cf-hf evaluate` records beside each sweep member it measured the member's α and the fingerprints of
    the endpoints it was mixed from (`member_weights`); a pushed member carries the same in its
    interpolation.json. They are compared wherever the folders now lie (moved, renamed or deleted).
    Results written before that record existed are checked by the path they name, and refused when that
    path is no longer a folder (nothing left to compare)."""
    from cf_hf.evaluation.results import SWEEP_MEMBER_FIELD
    from cf_hf.interpolation import member_weights

    if results is None:
        return
    for alpha, folder in checkpoints.items():
        model = results.model_for_alpha(alpha) if alpha is not None else None
        if model is None:
            continue
        measured = model.entry.get("model") or {}
        recorded_weights, recorded_path = measured.get(SWEEP_MEMBER_FIELD), measured.get("path")
        pushed_weights = member_weights(folder)
        refusal = (f"{results.source}: the numbers for α = {alpha:g} were measured on "
                   f"{recorded_path or 'another checkpoint'}, not on the pushed {folder}")
        advice = ("the cards would show another sweep's numbers. Evaluate the pushed sweep (`cf-hf evaluate "
                  "--sweep ...`) and pass that results.json")
        if recorded_weights is not None and pushed_weights is not None:
            if recorded_weights != pushed_weights:
                raise HubPushError(f"{refusal} (other weights: {_weights_difference(recorded_weights, pushed_weights)}): "
                                   f"{advice}")
            continue
        if recorded_path is None:
            continue
        recorded = Path(recorded_path)
        if recorded.resolve() == folder.resolve():
            continue
        if not recorded.is_dir():
            raise HubPushError(
                f"{results.source} records no weight fingerprint for α = {alpha:g} (written before cf_hf recorded "
                f"them) and the checkpoint it measured, {recorded}, is gone: nothing shows it is the pushed {folder}. "
                "Evaluate the pushed sweep again (`cf-hf evaluate --sweep ...`) and pass that results.json, or leave "
                "out --results")
        theirs = member_weights(recorded)
        if pushed_weights is None or theirs is None or pushed_weights != theirs:
            raise HubPushError(f"{refusal} ({'other weights' if pushed_weights and theirs else 'not the same checkpoint'}): "
                               f"{advice}")


def _weights_difference(recorded: dict, pushed: dict) -> str:
    """Which of α and the endpoint fingerprints differ between two `member_weights` records, as text."""
    differences = [f"alpha {recorded.get('alpha')!r} vs {pushed.get('alpha')!r}"] if recorded.get("alpha") != pushed.get("alpha") else []
    recorded_prints, pushed_prints = recorded.get("fingerprints") or {}, pushed.get("fingerprints") or {}
    for role in sorted(set(recorded_prints) | set(pushed_prints)):
        if recorded_prints.get(role) != pushed_prints.get(role):
            differences.append(f"{role} weights sha256 {str(recorded_prints.get(role))[:12]} vs "
                               f"{str(pushed_prints.get(role))[:12]}")
    return "; ".join(differences) or "other records"


def plan_model_push(
    path: str | Path,
    repo_id: str,
    results: Results | dict | str | Path | None = None,
    base_model: str | None = None,
    datasets: list[str] | None = None,
    default_alpha: float | None = None,
    sweep_plot: str | Path | None = None,
    license: str | None = None,
) -> list[PlannedPush]:
    """The commits that publish a checkpoint or a sweep (see module docstring); nothing is sent."""
    from cf_hf import METHOD_CONFIG_FIELD
    from cf_hf.interpolation import INTERPOLATION_FILE, SWEEP_FILE, alpha_name
    from model_card import is_repo_id, render_model_card

    check_repo_id(repo_id)
    checkpoints = find_checkpoints(path)
    results = _checked_results(results, sorted(a for a in checkpoints if a is not None))
    _check_results_measured_these_checkpoints(results, checkpoints)
    sweep_file = Path(path) / SWEEP_FILE
    original = json.loads(sweep_file.read_text()).get("original") if sweep_file.is_file() else None
    base_model = base_model or (original if is_repo_id(original) else None)
    if base_model is None:
        raise HubPushError("pass --base_model: the Hub id of the original CLIP, for the card's base_model")
    alphas = sorted(a for a in checkpoints if a is not None)
    if default_alpha is not None and default_alpha not in checkpoints:
        raise HubPushError(f"--default_alpha {default_alpha:g} is not one of the checkpoints {[f'{a:g}' for a in alphas]}")
    main_alpha = default_alpha if default_alpha is not None else (alphas[-1] if alphas else None)
    plot_bytes = Path(sweep_plot).read_bytes() if sweep_plot else None
    family = {f"{a:g}": f'revision="{alpha_name(a)}"' for a in alphas} if len(alphas) > 1 else None

    def card(alpha: float | None, folder: Path, revision: str | None) -> bytes:
        config = json.loads((folder / "config.json").read_text())
        training = {key: config[key] for key in TRAINING_CONFIG_FIELDS if key in config}
        return render_model_card(
            alpha=alpha, base_model=base_model, results=results, datasets=datasets or (), repo_id=repo_id,
            revision=revision, training=training, sweep_plot=SWEEP_PLOT_NAME if plot_bytes else None,
            family=family, license=license, method=config.get(METHOD_CONFIG_FIELD),
            model_type=config.get("model_type", "clip"),
        ).encode()

    plans = []
    targets = [(alpha, alpha_name(alpha)) for alpha in alphas]
    if main_alpha is not None or None in checkpoints:
        targets.append((main_alpha, "main"))
    for alpha, revision in targets:
        folder = checkpoints[alpha]
        extra = {"README.md": card(alpha, folder, None if revision == "main" else revision)}
        if plot_bytes:
            extra[SWEEP_PLOT_NAME] = plot_bytes
        label = "checkpoint" if alpha is None else f"CF_alpha checkpoint, alpha={alpha:g}"
        # interpolation.json holds local paths: the card states alpha instead.
        plans.append(PlannedPush(repo_id, "model", folder, revision, f"Upload {label}", extra,
                                 exclude=(INTERPOLATION_FILE,)))
    return plans


def push_model(path: str | Path, repo_id: str, private: bool = False, dry_run: bool = False,
               endpoint: str | None = None, **card_options) -> list:
    """Publish a checkpoint or sweep folder to `repo_id` (see module docstring). Returns a
    `PushResult` per branch."""
    plans = plan_model_push(path, repo_id, **card_options)
    return run_pushes(plans, private=private, dry_run=dry_run, endpoint=endpoint)
