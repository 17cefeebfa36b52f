"""`interrupts_held`: Ctrl-C during a checkpoint save lets the save finish, then stops the run."""

from __future__ import annotations

import os
import signal

import pytest

from cf_hf.methods.training_utils import interrupts_held


@pytest.fixture(autouse=True)
def ctrl_c_interrupts():
    """Python's own Ctrl-C handler, whatever the test process inherited (a shell's background job
    starts with Ctrl-C ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_inside_the_block_is_raised_after_it_finishes():
    written = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_held():
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of a save
            written.append("trainer_state.json")  # the rest of the save still runs
    assert written == ["trainer_state.json"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_block_without_ctrl_c_runs_as_it_is():
    with interrupts_held():
        pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_process_that_ignores_ctrl_c_keeps_ignoring_it():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with interrupts_held():
        os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_the_counterfactual_trainer_saves_its_checkpoints_with_ctrl_c_held(monkeypatch):
    from transformers import Trainer

    from cf_hf.methods.counterfactual.trainer import CounterfactualTrainer

    handlers = []
    monkeypatch.setattr(Trainer, "_save_checkpoint", lambda self, model, trial: handlers.append(signal.getsignal(signal.SIGINT)))
    CounterfactualTrainer._save_checkpoint(object.__new__(CounterfactualTrainer), None, None)
    assert handlers and handlers[0] is not signal.default_int_handler
