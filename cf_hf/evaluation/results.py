"""results.json: the one results schema that every producer writes (`cf-hf evaluate`, `cf-hf demo`)
and the one reader that every consumer uses (reports, model cards, `cf-hf push model`).

Schema version 1 (`SCHEMA_VERSION`):

    {
      "schema_version": 1,
      "models": {
        "<name>": {                       "original", "alpha=<α>" (`alpha_key`) for sweep members, or any name
          "alpha": 0.5,                   sweep members only
          "fairness_k": 100,              the k of the headline fairness numbers (after the gallery check)
          "<attribute>": {"max_skew": ..., "min_skew": ..., "ndkl": ...},   headline: mean over queries
          "zero_shot_accuracy": 0.71,     fractions in [0, 1]; a number not measured is absent
          "recall_at_5": 0.40,
          ...                             the producer's details ("fairness", "retrieval", "zero_shot", ...)
        }
      },
      "protocol": {...},                  what the numbers mean (`cf_hf.evaluation.protocol`)
      ...                                 producer extras (the demo: "chosen_alpha", "std", "targets", ...)
    }

A number JSON cannot hold (MinSkew = -inf in the exact convention) is written as null and read as
not measured. `write_results` checks a document against the schema and writes it; `load_results`
(a file) and `parse_results` (a dict) return a `Results`. A file without `schema_version` but with
`models` (written by `cf-hf evaluate` before the field existed) reads as version 1; the flat layout
older demos wrote (`"original"` and `"alpha=<α>"` at the top level) is refused with what to re-run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cf_hf.interpolation.sweep import ALPHA_KEY_PREFIX

SCHEMA_VERSION = 1
RESULTS_FILE = "results.json"
ORIGINAL = "original"
# The field of a model entry's "model" record naming the sweep member it measured (`member_weights`:
# α and the endpoints' weight fingerprints), written since results could be checked after folders move.
SWEEP_MEMBER_FIELD = "sweep_member"
FAIRNESS_METRICS = ("max_skew", "min_skew", "ndkl")
METRIC_LABELS = {"max_skew": "MaxSkew", "min_skew": "MinSkew", "ndkl": "NDKL"}
DOWNSTREAM_METRICS = ("zero_shot_accuracy", "recall_at_5")
# Keys of a model entry that are not sensitive attributes; an attribute may not take one of these names.
RESERVED_KEYS = ("model", "alpha", "fairness", "fairness_k", "retrieval", "zero_shot", *DOWNSTREAM_METRICS, "able")


class ResultsError(ValueError):
    """A results file or document that does not follow the schema; the message names the file, the
    model, the key and the value."""


@dataclass(frozen=True)
class ModelResults:
    """The headline numbers of one model of a results file.

    Attributes:
        fairness: attribute -> {"max_skew", "min_skew", "ndkl"} (means over queries at `fairness_k`;
            a metric not measured is absent).
        entry: the whole entry as written, details included.
    """

    name: str
    alpha: float | None
    fairness: dict[str, dict[str, float]]
    fairness_k: int | None
    zero_shot_accuracy: float | None
    recall_at_5: float | None
    entry: dict = field(repr=False)

    def metrics(self) -> dict[str, float]:
        """The measured numbers, flat: `"<attribute>/<metric>"` and the downstream names."""
        flat = {f"{attribute}/{metric}": value for attribute, values in self.fairness.items()
                for metric, value in values.items()}
        for name in DOWNSTREAM_METRICS:
            if (value := getattr(self, name)) is not None:
                flat[name] = value
        return flat


@dataclass(frozen=True)
class Results:
    """A results file: its models (in file order), its protocol and the producer's extra keys."""

    models: dict[str, ModelResults]
    protocol: dict
    extra: dict
    schema_version: int = SCHEMA_VERSION
    source: str = "results"

    def model_for_alpha(self, alpha: float) -> ModelResults | None:
        """The sweep member with this α; for α = 0 the original when no member is stored."""
        for model in self.models.values():
            if model.alpha is not None and math.isclose(model.alpha, float(alpha), rel_tol=0.0, abs_tol=1e-12):
                return model
        return self.models.get(ORIGINAL) if float(alpha) == 0.0 else None

    def sweep(self) -> dict[str, ModelResults]:
        """The original (when present) and the sweep members in increasing α."""
        members = sorted((model for model in self.models.values() if model.alpha is not None),
                         key=lambda model: model.alpha)
        original = [self.models[ORIGINAL]] if ORIGINAL in self.models and self.models[ORIGINAL].alpha is None else []
        return {model.name: model for model in original + members}


def _number(value, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ResultsError(f"{where}: expected a finite number or null, got {value!r}")
    return float(value)


def _alpha_of(name: str, entry: Mapping, where: str) -> float | None:
    if "alpha" in entry:
        return _number(entry["alpha"], f"{where} 'alpha'")
    if name.startswith(ALPHA_KEY_PREFIX):
        try:
            return float(name[len(ALPHA_KEY_PREFIX):])
        except ValueError:
            return None
    return None


def _model(name: str, entry, source: str) -> ModelResults:
    where = f"{source}: model {name!r}"
    if not isinstance(entry, Mapping):
        raise ResultsError(f"{where}: expected an object of numbers, got {type(entry).__name__}")
    fairness = {}
    for key, value in entry.items():
        if key in RESERVED_KEYS or not isinstance(value, Mapping) or not set(FAIRNESS_METRICS) & set(value):
            continue
        numbers = {metric: _number(value.get(metric), f"{where} '{key}' '{metric}'") for metric in FAIRNESS_METRICS}
        fairness[key] = {metric: number for metric, number in numbers.items() if number is not None}
    k = entry.get("fairness_k")
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise ResultsError(f"{where} 'fairness_k': expected a positive integer, got {k!r}")
    return ModelResults(
        name=name,
        alpha=_alpha_of(name, entry, where),
        fairness=fairness,
        fairness_k=k,
        zero_shot_accuracy=_number(entry.get("zero_shot_accuracy"), f"{where} 'zero_shot_accuracy'"),
        recall_at_5=_number(entry.get("recall_at_5"), f"{where} 'recall_at_5'"),
        entry=dict(entry),
    )


def parse_results(document: Mapping, source: str = "results") -> Results:
    """A `Results` from a results document (the content of results.json); `source` names it in errors."""
    if not isinstance(document, Mapping):
        raise ResultsError(f"{source}: expected a JSON object, got {type(document).__name__}")
    version = document.get("schema_version", SCHEMA_VERSION if "models" in document else None)
    if version is None:
        flat = [key for key in document if key == ORIGINAL or str(key).startswith(ALPHA_KEY_PREFIX)]
        if flat:
            raise ResultsError(
                f"{source}: results in the flat layout of older `cf-hf demo` runs ({flat[:3]} at the top level, "
                f"no 'schema_version'); re-run `cf-hf demo`, or `cf-hf evaluate` on the checkpoints, to write "
                f"schema version {SCHEMA_VERSION}"
            )
        raise ResultsError(f"{source}: no 'models': not a results file of `cf-hf evaluate` or `cf-hf demo`")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ResultsError(f"{source}: 'schema_version' must be a positive integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise ResultsError(f"{source}: schema version {version} was written by a newer cf_hf (this one reads "
                           f"up to {SCHEMA_VERSION}): upgrade cf_hf")
    models = document.get("models")
    if not isinstance(models, Mapping):
        raise ResultsError(f"{source}: 'models' must map model names to their numbers, got {type(models).__name__}")
    protocol = document.get("protocol", {})
    if not isinstance(protocol, Mapping):
        raise ResultsError(f"{source}: 'protocol' must be an object, got {type(protocol).__name__}")
    extra = {key: value for key, value in document.items() if key not in ("schema_version", "models", "protocol")}
    return Results(models={str(name): _model(str(name), entry, source) for name, entry in models.items()},
                   protocol=dict(protocol), extra=extra, schema_version=version, source=source)


def load_results(path: str | Path) -> Results:
    """Read a results.json (a file, or a folder holding one) into a `Results`."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such results file (`cf-hf evaluate --output_dir` writes {RESULTS_FILE})")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ResultsError(f"{path}: not valid JSON ({error})") from None
    return parse_results(document, source=str(path))


def finite(value):
    """`value` with every non-finite float replaced by None (JSON has no infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(key): finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def write_results(document: Mapping, path: str | Path) -> Path:
    """Write a results document as results.json in schema version `SCHEMA_VERSION` (the field is
    set here); the document is checked with `parse_results` first, so no producer writes a file the
    reader refuses."""
    path = Path(path)
    document = finite({"schema_version": SCHEMA_VERSION, **{k: v for k, v in document.items() if k != "schema_version"}})
    parse_results(document, source=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return path
