"""Option checks every command runs at parse time, before any work: a bad value is named with its option.

Each check raises `ValueError` ("--option=value: why"), which the dispatcher prints as one line.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def _name(option: str) -> str:
    return option if option.startswith("-") else f"--{option}"


def require_finite(option: str, value: float | None) -> None:
    """`value` is a finite number (or unset)."""
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{_name(option)}={value}: must be a finite number")


def require_positive(option: str, value: float | None, allow_zero: bool = False) -> None:
    """`value` is > 0 (>= 0 with `allow_zero`), or unset."""
    if value is None:
        return
    require_finite(option, value)
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{_name(option)}={value}: must be {'>= 0' if allow_zero else '> 0'}")


def require_all_positive(option: str, values: Iterable[float] | None, allow_zero: bool = False) -> None:
    """Every value of a list option is > 0 (>= 0 with `allow_zero`)."""
    for value in values or ():
        require_positive(option, value, allow_zero)


def require_in_range(option: str, value: float | None, low: float, high: float) -> None:
    """`low <= value <= high` (or unset)."""
    if value is None:
        return
    require_finite(option, value)
    if not low <= value <= high:
        raise ValueError(f"{_name(option)}={value}: must be in [{low}, {high}]")


def require_training_length(training_args: Any, epochs_option: str = "--num_train_epochs") -> None:
    """A training run trains: `max_steps` > 0, or unset (-1) with `num_train_epochs` > 0. Zero or negative
    lengths would save (and a later command score) the untrained model."""
    max_steps = getattr(training_args, "max_steps", -1)
    epochs = getattr(training_args, "num_train_epochs", None)
    if max_steps is not None and max_steps != -1 and max_steps <= 0:
        raise ValueError(f"--max_steps={max_steps}: must be > 0, or -1 to train {epochs_option} epochs")
    require_finite(epochs_option, epochs)
    if (max_steps is None or max_steps <= 0) and (epochs is None or epochs <= 0):
        raise ValueError(f"{epochs_option}={epochs}: must be > 0 (or give --max_steps > 0); "
                         "zero or negative lengths would save an untrained model")
    for option in ("learning_rate", "per_device_train_batch_size"):
        require_positive(option, getattr(training_args, option, None))
