"""The data the generator runs on — concepts, decorators, the attribute grid, word lists, caption
templates (YAML files next to this module) — and the loaders that read them (`loading.py`).

Every loader takes an optional `path` so that a user can pass their own file (`.yaml`, `.yml` or
`.json`, same layout as the shipped one).
"""

from cf_hf.concepts.concept import Concept
from cf_hf.concepts.loading import (
    APPEARANCE_WORDS_FILE,
    ATTRIBUTE_GRID_FILE,
    CAPTION_TEMPLATES_FILE,
    DATA_DIR,
    DECORATORS_FILE,
    PROFESSIONS_FILE,
    PROMPT_SET_FILES,
    SUPPORTED_SUFFIXES,
    AppearanceWords,
    Attribute,
    AttributeGrid,
    CaptionTemplates,
    ConceptScenes,
    ConceptSet,
    fix_articles,
    indefinite_article,
    load_appearance_words,
    load_attribute_grid,
    load_caption_templates,
    load_concept_scenes,
    load_concept_set,
    load_concepts,
    load_decorators,
    read_data_file,
)

__all__ = ["APPEARANCE_WORDS_FILE", "ATTRIBUTE_GRID_FILE", "AppearanceWords", "Attribute", "AttributeGrid", "CAPTION_TEMPLATES_FILE", "CaptionTemplates", "Concept", "ConceptScenes", "ConceptSet", "DATA_DIR", "DECORATORS_FILE", "PROFESSIONS_FILE", "PROMPT_SET_FILES", "SUPPORTED_SUFFIXES", "fix_articles", "indefinite_article", "load_appearance_words", "load_attribute_grid", "load_caption_templates", "load_concept_scenes", "load_concept_set", "load_concepts", "load_decorators", "read_data_file"]
