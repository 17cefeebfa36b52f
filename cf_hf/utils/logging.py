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
