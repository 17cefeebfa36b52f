"""Utilities below every other layer: model-loading errors, progress-bar control, tiny CLIP builders."""
