"""The model cards of the demo: a README.md in every CF_α checkpoint folder of the first seed."""

from __future__ import annotations

import os
from pathlib import Path

from .config import DemoConfig


def write_model_cards(results: dict, config: DemoConfig, original_dir: Path, sweep_dir: Path) -> None:
    """README.md in every CF_α checkpoint folder of the first seed (numbers: means over seeds)."""
    from cf_hf.interpolation import read_sweep
    from model_card import render_model_card

    sweep = read_sweep(sweep_dir)
    training = {
        "data": "counterfactual dataset of the professions world (cf-hf demo)",
        "steps": config.finetune_steps,
        "batch size": config.batch_size,
        "images per group": config.group_size,
        "learning rate": config.learning_rate,
        "beta_cf": config.beta_cf,
        "seeds averaged in the numbers": config.seeds,
    }
    world_sets = {
        "fairness": {"name": "professions world FairFace (cf_hf.world)", "type": "cf_hf-world-fairface"},
        "zero_shot_accuracy": {
            "name": "professions world ImageNet (cf_hf.world)",
            "type": "cf_hf-world-imagenet",
        },
        "recall_at_5": {"name": "professions world Flickr (cf_hf.world)", "type": "cf_hf-world-flickr"},
    }
    for alpha, folder in sweep["checkpoints"].items():
        card = render_model_card(
            alpha=float(alpha),
            # The original's folder relative to this card: it names the model without a machine path.
            base_model=os.path.relpath(original_dir, folder),
            results=results,
            training=training,
            evaluation_datasets=world_sets,
        )
        (Path(folder) / "README.md").write_text(card, encoding="utf-8")
