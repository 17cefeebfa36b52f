"""How much synthetic data each From Fake to Real schedule adds, per (class, attribute) group.

As the paper names them (Qraitem et al., "From Fake to Real", seed 003) and as its authors' code
computes them (`datasets/dataset.py`, `train_erm_usb.py`, `train_erm_asb.py`, `train_erm_ffr_1.py`):

- `usb` (uneven synthetic balancing): each group is filled with synthetic images up to the largest
  group's real count, `s_g = max_h n_h - n_g`. The majority groups get none, so "synthetic" goes
  with the minority: the shortcut FFR argues against.
- `asb` (adding synthetic balanced): every group gets the same number, USB's total divided by the
  number of groups (rounded down), `s_g = floor(sum_h (max n - n_h) / G)`, added to the real data.
- `ffr` stage 1: the same balanced count per group, synthetic data only; stage 2 is the real data.

The synthetic images of a group are its first `s_g` rows in the synthetic dataset's order (the
authors take the first files of each group's folder).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

UNEVEN, ADDED_BALANCED, FROM_FAKE_TO_REAL = "usb", "asb", "ffr"
SYNTHETIC_SCHEDULES = (UNEVEN, ADDED_BALANCED, FROM_FAKE_TO_REAL)


def uneven_counts(real_group_counts: Sequence[int]) -> np.ndarray:
    """(G,) USB's synthetic images per group: each group filled up to the largest real group."""
    counts = np.asarray(real_group_counts, dtype=np.int64)
    return counts.max() - counts


def synthetic_counts(schedule: str, real_group_counts: Sequence[int], group_names: Sequence[str]) -> np.ndarray:
    """(G,) synthetic images per (class, attribute) group for `schedule` (module docstring).

    Args:
        schedule: `usb`, `asb` or `ffr`.
        real_group_counts: (G,) real training images per group.
        group_names: (G,) the groups' names, for the error.

    Raises:
        ValueError: when no group is under-represented (USB's total is 0: every schedule would add
            nothing).
    """
    if schedule not in SYNTHETIC_SCHEDULES:
        raise ValueError(f"schedule must be one of {SYNTHETIC_SCHEDULES} to add synthetic data, got {schedule!r}")
    uneven = uneven_counts(real_group_counts)
    if uneven.sum() == 0:
        raise ValueError(
            f"the schedule {schedule!r} sizes its synthetic data by how far each group is below the largest, but "
            f"no group of the real data is under-represented: all {len(group_names)} groups "
            f"({', '.join(group_names)}) have {int(real_group_counts[0])} images; use --schedule real"
        )
    if schedule == UNEVEN:
        return uneven
    return np.full(len(uneven), int(uneven.sum()) // len(uneven), dtype=np.int64)


def select_synthetic(synthetic_group_ids: Sequence[int], counts: Sequence[int], group_names: Sequence[str],
                     what: str) -> np.ndarray:
    """Sorted row indices of the first `counts[g]` synthetic rows of each group `g`.

    Args:
        synthetic_group_ids: (n,) group id of each synthetic row.
        counts: (G,) rows wanted per group.
        group_names: (G,) the groups' names, for the error.
        what: the dataset's name, for the error.

    Raises:
        ValueError: naming every group with fewer synthetic rows than it needs.
    """
    group_ids = np.asarray(synthetic_group_ids, dtype=np.int64)
    available = np.bincount(group_ids, minlength=len(counts))
    short = [f"{group_names[group]} needs {int(counts[group])}, has {int(available[group])}"
             for group in range(len(counts)) if available[group] < counts[group]]  # fmt: skip
    if short:
        raise ValueError(f"the {what} has too few images for {len(short)} groups: {'; '.join(short)}")
    chosen = [np.flatnonzero(group_ids == group)[: int(count)] for group, count in enumerate(counts)]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def source_group_ids(group_ids: Sequence[int], is_synthetic: Sequence[bool], num_groups: int) -> tuple[np.ndarray, list[int]]:
    """Groups (class, attribute, real-or-generated) of mixed training data, as the authors' baselines
    use them for GroupDRO and resampling (their `group_idx_real_gen`).

    Args:
        group_ids: (n,) (class, attribute) group id of each row, in [0, num_groups).
        is_synthetic: (n,) whether the row is generated.
        num_groups: G, the number of (class, attribute) groups.

    Returns:
        (n,) ids in [0, K) of the K groups present, and for each of them its uncompacted id
        `group + G * is_synthetic` (sorted), so that the names can be recovered.
    """
    expanded = np.asarray(group_ids, dtype=np.int64) + num_groups * np.asarray(is_synthetic, dtype=np.int64)
    present, compact = np.unique(expanded, return_inverse=True)
    return compact.astype(np.int64), present.tolist()
