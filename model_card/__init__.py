"""Model cards for the CF_alpha checkpoints (`card.py`): `render_model_card(...)` → README.md text from
`template.md`, with YAML metadata and the measured results."""

from model_card.card import as_results, is_repo_id, model_index, render_model_card

__all__ = ["as_results", "is_repo_id", "model_index", "render_model_card"]
