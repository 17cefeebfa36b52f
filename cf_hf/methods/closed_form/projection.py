"""The closed-form projection: shrink each embedding's component in the attribute subspace.

With unit-norm prompt embeddings, each attribute value's **group prototype** p_g is the mean of its
prompt variants ("a photo of a female person.", ...). The **attribute subspace** S is spanned by the
prototypes' differences from their mean (rank ≤ G − 1); P is the orthogonal projection onto it. An
embedding z splits into its in-subspace part a = P z and its orthogonal part z − a.

Two objectives of the debiased embedding z' (a point of the cross-modal space, both towers alike):
fairness f_F(z') = |P z'|² (the attribute energy left: every group prototype's similarity to z'
differs from the others only through it) and utility loss f_U(z') = |z' − z|². f_F does not depend on
the orthogonal part, so z' keeps it, and in S the problem is min_y max(w |y|², (1 − w) |y − a|²), the
Chebyshev scalarization with ideal point 0 and fairness weight w ∈ (0, 1]. Its solution is on the
segment y = γ a where both weighted terms are equal:

    γ = √(1 − w) / (√w + √(1 − w)),        z' = (z − P z) + γ P z = (I − (1 − γ) P) z,

the Pareto-optimal point of weight w (no other z' has both smaller f_F and smaller f_U), with the
utility loss bounded by |z' − z| = (1 − γ) |P z| ≤ (1 − γ). w = 1 removes the subspace (γ = 0);
w = 1/2 halves it. The map is linear: it folds into both projections of a plain `CLIPModel`.

Several attributes at once (cf_hf's extension; the paper debiases one attribute at a time): S is the
union of the attributes' subspaces, their bases stacked and orthonormalized (SVD, dependent directions
dropped), and one map `I − (1 − γ) P` shrinks it. With one attribute the basis is that attribute's, as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from cf_hf.methods.attribute_prompts import AttributePrompts
from cf_hf.methods.linear import LinearMethod, MethodError, attribute_list, attribute_settings

# The fairness weights swept by default: full removal, and two milder Pareto points.
DEFAULT_WEIGHTS = (1.0, 0.9, 0.7)
# Singular values below this fraction of the largest are treated as zero (dependent prototypes).
RANK_TOLERANCE = 1e-6


def shrink_factor(weight: float) -> float:
    """γ(w) = √(1 − w) / (√w + √(1 − w)): the share of the in-subspace component kept at fairness weight w."""
    if not 0.0 < weight <= 1.0:
        raise MethodError(f"closed_form: the fairness weight must be in (0, 1], got {weight}")
    return math.sqrt(1.0 - weight) / (math.sqrt(weight) + math.sqrt(1.0 - weight))


def group_prototypes(prompt_embeddings: dict[str, np.ndarray]) -> np.ndarray:
    """(G, d) prototypes: the mean of each value's unit-norm prompt embeddings ((n_prompts, d) each)."""
    prototypes = []
    for value, embeddings in prompt_embeddings.items():
        embeddings = np.asarray(embeddings, dtype=np.float64)
        if embeddings.ndim != 2 or not len(embeddings):
            raise MethodError(f"closed_form: value {value!r} has no prompt embeddings")
        embeddings = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
        prototypes.append(embeddings.mean(axis=0))
    return np.stack(prototypes)


def attribute_basis(prototypes: np.ndarray) -> np.ndarray:
    """(d, r) orthonormal basis of the span of the prototypes' differences from their mean."""
    differences = prototypes - prototypes.mean(axis=0, keepdims=True)
    _, singular_values, right = np.linalg.svd(differences, full_matrices=False)
    if not len(singular_values) or singular_values[0] <= 0:
        raise MethodError("closed_form: the group prototypes are identical: the prompts do not separate the values")
    rank = int((singular_values > RANK_TOLERANCE * singular_values[0]).sum())
    return right[:rank].T


def joint_basis(bases: Sequence[np.ndarray]) -> np.ndarray:
    """(d, r) orthonormal basis of the union of subspaces given by (d, r_a) orthonormal bases; one basis
    is returned unchanged (a single attribute's fit stays bit-identical)."""
    if len(bases) == 1:
        return bases[0]
    stacked = np.concatenate(bases, axis=1)
    left, singular_values, _ = np.linalg.svd(stacked, full_matrices=False)
    rank = int((singular_values > RANK_TOLERANCE * singular_values[0]).sum())
    return left[:, :rank]


def closed_form_map(basis: np.ndarray, weight: float) -> np.ndarray:
    """(d, d) map `I − (1 − γ(w)) P` with P = B Bᵀ the projection onto the attribute subspace."""
    projection = basis @ basis.T
    return np.eye(len(projection)) - (1.0 - shrink_factor(weight)) * projection


def closed_form_maps(embed_texts: Callable[[Sequence[str]], np.ndarray],
                     prompts: AttributePrompts | Sequence[AttributePrompts],
                     weights: Sequence[float] = DEFAULT_WEIGHTS, fitted_on: dict | None = None) -> list[LinearMethod]:
    """The closed-form projection for each fairness weight, applied to both towers.

    Args:
        embed_texts: unit-norm text embeddings of a list of prompts, (n, d).
        prompts: the attribute's prompts (`load_attribute_prompts`), or several attributes' (removed
            jointly: the union of their subspaces).
        weights: fairness weights w in (0, 1], one fit each.
    """
    if not weights:
        raise MethodError("closed_form: give at least one fairness weight")
    for weight in weights:
        shrink_factor(weight)
    attributes = [prompts] if isinstance(prompts, AttributePrompts) else list(prompts)
    names = attribute_list([attribute.attribute for attribute in attributes], "closed_form")
    bases = []
    for attribute in attributes:
        embeddings = {value: embed_texts(list(attribute.prototype_prompts[value])) for value in attribute.values}
        bases.append(attribute_basis(group_prototypes(embeddings)))
    basis = joint_basis(bases)
    if len(attributes) == 1:
        record = {**(fitted_on or {}), "prompts_file": attributes[0].source, "values": list(attributes[0].values),
                  "subspace_rank": int(basis.shape[1])}
    else:
        record = {**(fitted_on or {}), "prompts_file": attributes[0].source,
                  "values": {attribute.attribute: list(attribute.values) for attribute in attributes},
                  "subspace_ranks": {name: int(part.shape[1]) for name, part in zip(names, bases)},
                  "subspace_rank": int(basis.shape[1])}
    fits = []
    for weight in weights:
        matrix = closed_form_map(basis, weight)
        fits.append(LinearMethod(method="closed_form", settings={"weight": float(weight), **attribute_settings(names),
                                                                 "kept_share": shrink_factor(weight)},
                                 fitted_on=record, image_map=matrix, text_map=matrix, swept=("weight",)))
    return fits
