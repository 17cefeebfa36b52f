"""Biased prompts (Chuang et al. 2023, "Debiasing vision-language models via biased prompts").

Training-free, text side only. With `B` a basis of the spurious prompts' embeddings ("A photo of a
male." / "A photo of a female."), `P0 = I − B(BᵀB)⁻¹Bᵀ` projects their span out. Calibration pairs
`S` of prompts that differ only in the attribute ("A photo of a male nurse." / "… female nurse.")
give `M = mean over S of (z_i − z_j)(z_i − z_j)ᵀ`, and the method's map is `P = P0 (λM + I)⁻¹`
(λ = 1000 by default). Text embeddings become `P z`, renormalized; images are unchanged. `P` is
linear, so it folds into `text_projection` (`cf_hf.methods.linear`).

The basis is the right singular vectors of the spurious embeddings (the authors' TruncatedSVD with
as many components as prompts, without centring), so `B` has orthonormal columns.

The calibration pairs name a training list of concepts (the prompts file's `calibration_concepts`)
from which every evaluated concept is dropped: the authors calibrate on a training list of
professions and report on a disjoint test list, and a pair naming an evaluated concept would fit
the map to the very queries it is scored on.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cf_hf.methods.linear import LinearMethod, MethodError

PROMPTS_FILE = Path(__file__).resolve().parent / "biased_prompts.yaml"
PROMPTS_FORMAT = "cf_hf-biased-prompts"
# The placeholders each template list of a prompts file may use.
TEMPLATE_PLACEHOLDERS = {"spurious_templates": {"value"}, "pair_templates": {"value", "concept"}}
DEFAULT_LAMBDA = 1000.0
# Singular values below this fraction of the largest are treated as zero (dependent prompts).
_RANK_TOLERANCE = 1e-6
# "a {value}" in a template: its article agrees with the value's word ("an East Asian").
_ARTICLE_BEFORE_VALUE = re.compile(r"\b([Aa]) \{value\}")


@dataclass(frozen=True)
class BiasedPrompts:
    """The prompts of one attribute: spurious prompts and calibration pairs."""

    attribute: str
    spurious: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]
    # The concepts the pairs name, and the file's calibration concepts left out because they are evaluated.
    calibration_concepts: tuple[str, ...] = ()
    held_out_concepts: tuple[str, ...] = ()


def indefinite_article(word: str) -> str:
    """"an" before a word that starts with a vowel letter ("an East Asian", "an elderly"), else "a"."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def fill_template(template: str, value: str, concept: str | None = None) -> str:
    """A prompt template with `{value}` (and `{concept}`) filled in; the article of "a {value}"
    agrees with the value's word ("A photo of an East Asian.")."""
    def article(match: re.Match) -> str:
        chosen = indefinite_article(value)
        return (chosen.capitalize() if match.group(1) == "A" else chosen) + " {value}"

    fields = {"value": value} if concept is None else {"value": value, "concept": concept}
    return _ARTICLE_BEFORE_VALUE.sub(article, template).format(**fields)


def _calibration_concepts(data: dict, path: Path, given: Sequence[str] | None,
                          evaluated: Sequence[str]) -> tuple[list[str], list[str]]:
    """(the calibration concepts, the ones left out because they are evaluated)."""
    if given is None:
        listed = data.get("calibration_concepts")
        if not isinstance(listed, list) or not listed:
            raise MethodError(f"{path}: no calibration_concepts list: name the concepts the calibration pairs use "
                              "(a training list, disjoint from the concepts you evaluate)")
        given = listed
    evaluated_names = {str(concept).strip().lower() for concept in evaluated}
    concepts = [str(concept) for concept in given]
    held_out = [concept for concept in concepts if concept.strip().lower() in evaluated_names]
    kept = [concept for concept in concepts if concept.strip().lower() not in evaluated_names]
    if not kept:
        raise MethodError(f"{path}: every calibration concept {concepts} is also evaluated: the calibration pairs "
                          "must name concepts disjoint from the evaluated ones")
    return kept, held_out


def load_biased_prompts(
    attribute: str | Sequence[str],
    evaluated_concepts: Sequence[str] = (),
    path: str | Path | None = None,
    values: Sequence[str] | None = None,
    calibration_concepts: Sequence[str] | None = None,
) -> BiasedPrompts:
    """Prompts for `attribute` from the prompts file (default: the shipped `biased_prompts.yaml`).

    Args:
        attribute: an attribute of the file (`gender`, `race`, `age` in the shipped one), or several:
            their spurious prompts and calibration pairs are pooled.
        evaluated_concepts: the concepts the fitted model is evaluated on ("nurse", "doctor", ...):
            they are dropped from the calibration concepts (recorded in `held_out_concepts`).
        values: the attribute values to use (default: all of the file's); each must be in the file.
            Only with a single attribute.
        calibration_concepts: the concepts the calibration pairs name (default: the file's
            `calibration_concepts`).
    """
    from cf_hf.concepts import read_data_file

    path = Path(path) if path is not None else PROMPTS_FILE
    data = read_data_file(path, PROMPTS_FORMAT)
    for key, allowed in TEMPLATE_PLACEHOLDERS.items():
        _check_templates(path, key, data.get(key), allowed)
    attributes = [attribute] if isinstance(attribute, str) else list(attribute)
    if values is not None and len(attributes) != 1:
        raise MethodError("values= selects the values of one attribute; give a single attribute")
    known = data.get("attributes") or {}
    unknown = [name for name in attributes if name not in known]
    if unknown or not attributes:
        raise MethodError(f"{path}: no attribute {', '.join(map(repr, unknown))}; the file has {sorted(known)}")
    for key in ("spurious_templates", "pair_templates"):
        if not isinstance(data.get(key), list) or not data[key]:
            raise MethodError(f"{path}: no {key} list")
    concepts, held_out = _calibration_concepts(data, path, calibration_concepts, evaluated_concepts)
    spurious, pairs = [], []
    for name in attributes:
        words = {str(key): str(value) for key, value in known[name].items()}
        if values is not None:
            missing = [value for value in values if value not in words]
            if missing:
                raise MethodError(f"{path}: attribute {name!r} has no value(s) {missing}; it has {sorted(words)}")
            words = {value: words[value] for value in values}
        if len(words) < 2:
            raise MethodError(f"{path}: attribute {name!r} needs at least two values, has {sorted(words)}")
        spurious += [fill_template(template, word) for template in data["spurious_templates"] for word in words.values()]
        pairs += [(fill_template(template, first, concept), fill_template(template, second, concept))
                  for template in data["pair_templates"]
                  for concept in concepts
                  for first, second in itertools.combinations(words.values(), 2)]
    return BiasedPrompts(attribute="+".join(attributes), spurious=tuple(spurious), pairs=tuple(pairs),
                         calibration_concepts=tuple(concepts), held_out_concepts=tuple(held_out))


def _check_templates(path: Path, key: str, templates, allowed: set[str]) -> None:
    """Refuse a template list that is missing, not strings, or names a placeholder the method does not fill."""
    import string

    if not isinstance(templates, list) or not templates or not all(isinstance(item, str) for item in templates):
        raise MethodError(f"{path}: `{key}:` must be a list of template strings")
    for template in templates:
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
        except ValueError as error:
            raise MethodError(f"{path}: `{key}:` template {template!r} is malformed ({error})") from None
        unknown = sorted(names - allowed)
        if unknown:
            raise MethodError(f"{path}: `{key}:` template {template!r} uses unknown placeholder(s) {unknown}; "
                              f"allowed: {sorted(allowed)}")


def orthogonal_complement_projection(spurious_embeddings: np.ndarray) -> np.ndarray:
    """`P0 = I − B(BᵀB)⁻¹Bᵀ` for `B` a basis of the rows of `spurious_embeddings` (s, d) -> (d, d)."""
    embeddings = np.asarray(spurious_embeddings, dtype=np.float64)
    _, singular_values, right = np.linalg.svd(embeddings, full_matrices=False)
    rank = int((singular_values > _RANK_TOLERANCE * singular_values[0]).sum())
    basis = right[:rank].T  # (d, rank)
    return np.eye(embeddings.shape[1]) - basis @ np.linalg.inv(basis.T @ basis) @ basis.T


def calibration_matrix(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """`M = mean over pairs of (z_i − z_j)(z_i − z_j)ᵀ` for (n_pairs, d) embeddings -> (d, d)."""
    differences = np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64)
    return differences.T @ differences / len(differences)


def biased_prompts_map(
    spurious_embeddings: np.ndarray, first: np.ndarray, second: np.ndarray, lam: float = DEFAULT_LAMBDA
) -> np.ndarray:
    """The method's map `P = P0 (λM + I)⁻¹` (d, d) from unit-norm prompt embeddings."""
    if lam < 0:
        raise MethodError(f"lambda must be >= 0, got {lam}")
    projection = orthogonal_complement_projection(spurious_embeddings)
    calibration = calibration_matrix(first, second)
    return projection @ np.linalg.inv(lam * calibration + np.eye(len(calibration)))


def biased_prompts_maps(
    embed_texts: Callable[[list[str]], np.ndarray],
    prompts: BiasedPrompts,
    lambdas: Sequence[float] = (DEFAULT_LAMBDA,),
    fitted_on: dict | None = None,
) -> list[LinearMethod]:
    """One fitted method per λ.

    Args:
        embed_texts: list of prompts -> (n, d) unit-norm text embeddings of the original model
            (e.g. `EmbeddingEngine.embed_texts`).
        prompts: from `load_biased_prompts`.
        lambdas: the calibration strengths to fit (a sweep).
    """
    spurious = embed_texts(list(prompts.spurious))
    first = embed_texts([pair[0] for pair in prompts.pairs])
    second = embed_texts([pair[1] for pair in prompts.pairs])
    record = {"spurious_prompts": list(prompts.spurious), "calibration_pairs": len(prompts.pairs),
              "example_pair": list(prompts.pairs[0]), "calibration_concepts": list(prompts.calibration_concepts),
              "held_out_concepts": list(prompts.held_out_concepts), **(fitted_on or {})}
    return [
        LinearMethod(method="biased_prompts", settings={"attribute": prompts.attribute, "lambda": float(lam)},
                     fitted_on=record, text_map=biased_prompts_map(spurious, first, second, lam),
                     swept=("lambda",))
        for lam in lambdas
    ]
