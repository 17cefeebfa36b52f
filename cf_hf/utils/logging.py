"""Quieting the libraries cf_hf drives: what `--quiet` means beyond a command's own lines."""

from __future__ import annotations


def silence_progress_bars(diffusers: bool = False) -> None:
    """Hide the progress bars of datasets, transformers, huggingface_hub and, when asked (it costs
    seconds to import), diffusers."""
    import datasets
    import huggingface_hub.utils
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()
    if diffusers:
        import diffusers.utils.logging

        diffusers.utils.logging.disable_progress_bar()


def quiet_trainer(trainer) -> None:
    """Stop `trainer` printing its log dictionaries when its progress bar is off.

    With `disable_tqdm`, `transformers.Trainer` swaps its progress bar for a `PrinterCallback` that
    prints every log (`{'loss': ...}`) to stdout; cf_hf turns the bar off only for `--quiet`, which
    asks for neither. The logs still reach `trainer.state.log_history`, `trainer_state.json` and the
    `report_to` integrations.
    """
    from transformers import PrinterCallback

    if trainer.args.disable_tqdm:
        trainer.remove_callback(PrinterCallback)
