"""Several processes of one run: the process state, meeting points, and failure propagation.

Several processes meet through collectives only while setting up, where they arrive within
seconds; after that, a process that has finished its share waits by polling the run folder for
the others' captions and shard receipts, however long they take (uneven shares are the rule after
a resume). A process that fails records its error in the run folder; every other process stops
with that error instead of waiting for work that will never come.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from cf_hf.generation.run_folder import RunFolder

# Only the set-up meetings use collectives (the long stages poll the run folder), but checking the
# models may fetch their config files from the Hub first; NCCL's default (10 minutes) is too short.
PROCESS_GROUP_TIMEOUT = timedelta(hours=1)
# How often a waiting process looks at the run folder, and how long a failed process waits for
# the others to read its error before it exits (a launcher may kill them when it exits).
POLL_SECONDS = 1.0
FAILURE_GRACE_SECONDS = 30.0

_Result = TypeVar("_Result")


class ProcessFailedError(RuntimeError):
    """Another process of the run failed; the message is its error."""


class _SingleProcess:
    process_index = 0
    local_process_index = 0
    num_processes = 1
    is_main_process = True

    def wait_for_everyone(self) -> None:
        pass


def distributed_state():
    """`accelerate`'s process state when launched with it (process group timeout
    `PROCESS_GROUP_TIMEOUT`), a single process otherwise."""
    try:
        from accelerate import PartialState
        from accelerate.utils import InitProcessGroupKwargs
    except ImportError:
        return _SingleProcess()
    return PartialState(**InitProcessGroupKwargs(timeout=PROCESS_GROUP_TIMEOUT).to_kwargs())


def _describe_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _gather_errors(state, error: BaseException | None) -> list[str | None]:
    """Every process's error message (None where it succeeded); a collective, so a meeting point.
    Without a process group (one process, or a state object that only has a barrier) each
    process knows only its own."""
    message = None if error is None else _describe_error(error)
    if state.num_processes > 1:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            messages = [None] * state.num_processes
            dist.all_gather_object(messages, message)
            return messages
    state.wait_for_everyone()
    return [message if index == state.process_index else None for index in range(state.num_processes)]


def together(state, action: Callable[[], _Result]) -> _Result:
    """Run `action` on every process, then meet: if it failed anywhere, it fails everywhere (with
    that process's error), rather than leaving the others waiting for it at the next meeting."""
    result, error = None, None
    try:
        result = action()
    except Exception as raised:
        error = raised
    messages = _gather_errors(state, error)
    if error is not None:
        raise error
    for index, message in enumerate(messages):
        if message is not None:
            raise ProcessFailedError(f"process {index} failed: {message}")
    return result


def raise_if_another_failed(state, folder: RunFolder) -> None:
    """Raise `ProcessFailedError` (and record this process as stopped) if another process failed."""
    for index, record in sorted(folder.process_records().items()):
        if index != state.process_index and record.get("status") == "failed":
            message = f"process {index} failed: {record.get('error')}"
            folder.write_process_record(state.process_index, "stopped", message)
            raise ProcessFailedError(message)


def wait_for(state, folder: RunFolder, ready: Callable[[], bool]) -> None:
    """Poll the run folder until `ready()`; stop with another process's error if one failed."""
    while not ready():
        raise_if_another_failed(state, folder)
        time.sleep(POLL_SECONDS)


def record_failure(state, folder: RunFolder, error: BaseException) -> None:
    """Tell the other processes that this one failed, and give the waiting ones time to read it."""
    folder.write_process_record(state.process_index, "failed", _describe_error(error))
    deadline = time.monotonic() + FAILURE_GRACE_SECONDS

    def stopped() -> int:  # a "done" process still waits for this one's shards: it has not read the error yet
        return sum(record.get("status") != "done" for record in folder.process_records().values())

    while time.monotonic() < deadline and stopped() < state.num_processes:
        time.sleep(POLL_SECONDS / 5)
