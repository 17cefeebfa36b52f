"""BendVLM's per-query debiasing (Gerych et al., NeurIPS 2024, "BendVLM: Test-Time Debiasing of
Vision-Language Embeddings"), as pure tensor code on unit-norm embeddings.

For a query embedding q (unit norm):

1. **Local attribute subspace.** The query is augmented once per attribute value ("a photo of a doctor
   who is female", ...; `attribute_prompts.yaml`). The subspace is spanned by the differences of the
   values' augmented embeddings (averaged over templates) from their mean, together with the
   differences of the attribute prompts' embeddings from their mean. q is projected onto its orthogonal
   complement and renormalized: q₁ = normalize((I − B Bᵀ) q).
2. **Equal similarity to the groups.** For each value g, μ_g is the mean of the k reference images
   labelled g that are most similar to q₁. The paper solves

       max_{q*} q*·q₁   subject to |q*| = 1,  q*·μ_g = q*·μ₀ for every g,

   by SLSQP. The constraints are linear, D q* = 0 with rows μ_g − μ₀, and on the unit sphere maximizing
   q*·q₁ is minimizing |q* − q₁|², so the solution is the normalized projection of q₁ onto D's null
   space: q* = normalize(q₁ − Dᵀ (D Dᵀ)⁺ D q₁). `tests/methods/bendvlm` checks it against SLSQP.

Images are unchanged.

Several attributes at once (cf_hf's extension; the authors debias one attribute at a time): step 1's
subspace is spanned by every attribute's directions (augmentations and prompts, each attribute centred on
its own mean), and step 2's D stacks every attribute's rows μ_g − μ₀ (its own groups, its own first
value): the pseudo-inverse closed form is unchanged. `value_counts` gives how many values each attribute
has (the value axis of `augmented` and `attribute_prompts` is attribute-major) and `labels` is then (n, A).
With one attribute every step is the single-attribute one.
"""

from __future__ import annotations

import torch

# Singular values below this fraction of the largest are treated as zero (dependent directions).
RANK_TOLERANCE = 1e-6


def _normalize(tensor: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(tensor, dim=-1)


def local_attribute_basis(augmented: torch.Tensor, attribute_prompts: torch.Tensor,
                          value_counts: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query, an orthonormal basis of the local attribute subspace (of every attribute's).

    Args:
        augmented: (m, V, T, d) unit-norm embeddings of the augmented queries (V values, T templates).
        attribute_prompts: (V, d) unit-norm attribute prompt embeddings.
        value_counts: values per attribute, summing to V (attribute-major); None: one attribute.

    Returns:
        (m, r, d) basis vectors (rows) and an (m, r) mask of those that are real (rank may vary per query).
    """
    parts = []
    for values, prompts in zip(augmented.mean(dim=2).split(_counts(value_counts, attribute_prompts), dim=1),
                               attribute_prompts.split(_counts(value_counts, attribute_prompts), dim=0)):
        prompt_directions = prompts - prompts.mean(dim=0, keepdim=True)
        parts.append((values - values.mean(dim=1, keepdim=True), prompt_directions.expand(len(augmented), -1, -1)))
    directions = torch.cat([part for pair in parts for part in pair] if len(parts) > 1 else list(parts[0]), dim=1)
    _, singular_values, right = torch.linalg.svd(directions, full_matrices=False)
    mask = singular_values > RANK_TOLERANCE * singular_values[:, :1].clamp_min(torch.finfo(directions.dtype).tiny)
    return right, mask


def _counts(value_counts: list[int] | None, attribute_prompts: torch.Tensor) -> list[int]:
    return list(value_counts) if value_counts is not None else [attribute_prompts.shape[0]]


def remove_local_subspace(queries: torch.Tensor, augmented: torch.Tensor, attribute_prompts: torch.Tensor,
                          value_counts: list[int] | None = None) -> torch.Tensor:
    """Step 1: (m, d) unit queries projected away from their local attribute subspace, renormalized."""
    basis, mask = local_attribute_basis(augmented, attribute_prompts, value_counts)
    coefficients = torch.einsum("mrd,md->mr", basis, queries) * mask
    return _normalize(queries - torch.einsum("mr,mrd->md", coefficients, basis))


def local_group_means(queries: torch.Tensor, reference: torch.Tensor, labels: torch.Tensor, n_values: int,
                      neighbors: int) -> torch.Tensor:
    """(m, V, d): per query and value, the mean of the `neighbors` reference embeddings of that value most
    similar to the query (all of them when the value has fewer). `reference`: (n, d) unit-norm,
    `labels`: (n,) value indices in [0, V)."""
    # Similarities in the reference's dtype (a large float32 reference is not copied per call), means in the queries'.
    similarities = queries.to(reference.dtype) @ reference.T
    means = []
    for value in range(n_values):
        members = torch.nonzero(labels == value).squeeze(1)
        if not len(members):
            raise ValueError(f"the reference set has no embedding of value index {value}")
        count = min(neighbors, len(members))
        # Stable ties: `topk` on the members in index order.
        nearest = members[similarities[:, members].topk(count, dim=1).indices]
        means.append(reference[nearest].to(queries.dtype).mean(dim=1))
    return torch.stack(means, dim=1)


def equalize_group_similarity(queries: torch.Tensor, group_means: torch.Tensor,
                              value_counts: list[int] | None = None) -> torch.Tensor:
    """Step 2 in closed form: (m, d) unit queries q₁, (m, V, d) group means -> the unit q* nearest to q₁
    with equal dot products with every group mean of each attribute (`value_counts`: values per
    attribute, attribute-major; None: one attribute)."""
    differences = torch.cat([means[:, 1:] - means[:, :1] for means in group_means.split(
        list(value_counts) if value_counts is not None else [group_means.shape[1]], dim=1)], dim=1)
    gram = differences @ differences.transpose(1, 2)
    weights = torch.linalg.pinv(gram, hermitian=True) @ (differences @ queries.unsqueeze(-1))
    return _normalize(queries - (differences.transpose(1, 2) @ weights).squeeze(-1))


def bendvlm_debias(queries: torch.Tensor, augmented: torch.Tensor, attribute_prompts: torch.Tensor,
                   reference: torch.Tensor, labels: torch.Tensor, neighbors: int,
                   value_counts: list[int] | None = None) -> torch.Tensor:
    """BendVLM on embeddings: (m, d) queries -> (m, d) unit-norm debiased queries.

    Args:
        queries: (m, d) query embeddings (normalized here).
        augmented: (m, V, T, d) embeddings of the attribute-augmented queries (normalized here).
        attribute_prompts: (V, d) attribute prompt embeddings (normalized here).
        reference: (n, d) attribute-labelled reference image embeddings (normalized here).
        labels: (n,) value index of each reference embedding; (n, A) with several attributes.
        neighbors: reference images per value that define its local mean.
        value_counts: values per attribute (several attributes removed jointly; the value axes of
            `augmented` and `attribute_prompts` attribute-major); None: one attribute.
    """
    if neighbors < 1:
        raise ValueError(f"neighbors must be >= 1, got {neighbors}")
    return bendvlm_unit(_normalize(queries), _normalize(augmented), _normalize(attribute_prompts), _normalize(reference),
                        labels, neighbors, value_counts)


def bendvlm_unit(queries: torch.Tensor, augmented: torch.Tensor, attribute_prompts: torch.Tensor,
                 reference: torch.Tensor, labels: torch.Tensor, neighbors: int,
                 value_counts: list[int] | None = None) -> torch.Tensor:
    """`bendvlm_debias` for inputs that are already unit-norm (a stored reference set is not renormalized per query)."""
    projected = remove_local_subspace(queries, augmented, attribute_prompts, value_counts)
    if value_counts is None:
        means = local_group_means(projected, reference, labels, attribute_prompts.shape[0], neighbors)
    else:
        means = torch.cat([local_group_means(projected, reference, labels[:, index], count, neighbors)
                           for index, count in enumerate(value_counts)], dim=1)
    return equalize_group_similarity(projected, means, value_counts)
