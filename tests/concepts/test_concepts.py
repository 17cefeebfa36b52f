"""The shipped concept data and its loaders: contents, user files, clear errors for bad input."""

from __future__ import annotations

import json

import pytest

from cf_hf.concepts import (
    AttributeGrid,
    fix_articles,
    load_appearance_words,
    load_attribute_grid,
    load_concepts,
    load_decorators,
)
from cf_hf.generation.captions import CaptionValidator, TemplateCaptionWriter

FAIRFACE_RACES = {"White", "Black", "Latino_Hispanic", "East_Asian", "Southeast_Asian", "Indian", "Middle_Eastern"}


def test_shipped_professions_have_plural_and_article():
    concepts = load_concepts()
    assert len(concepts) >= 30
    for concept in concepts:
        assert concept.plural and concept.plural != concept.name
        assert concept.article in {"a", "an"}
    assert {concept.article for concept in concepts if concept.name in {"engineer", "architect"}} == {"an"}


def test_shipped_decorators_cover_the_method_fields():
    decorators = load_decorators()
    assert {"setting", "lighting", "framing", "camera", "time_of_day", "style"} <= set(decorators)
    assert all(len(values) >= 2 for values in decorators.values())


def test_shipped_decorators_say_nothing_about_the_person():
    validator = CaptionValidator(load_appearance_words())
    for values in load_decorators().values():
        for value in values:
            assert not [p for p in validator.problems(f"A doctor works, {value}.", load_concepts(names=["doctor"])[0]) if p.startswith("appearance")], value


def test_shipped_grid_is_gender_fairface_race_age():
    grid = load_attribute_grid()
    assert grid.names == ["gender", "race", "age"]
    assert set(grid.attributes[1].values) == FAIRFACE_RACES
    assert len(grid.cells()) == 2 * 7 * 3


def test_optional_attributes_join_the_grid_and_the_prompt():
    grid = load_attribute_grid(optional_attributes=["body_type", "skin_tone"])
    assert grid.names[-2:] == ["body_type", "skin_tone"]
    cell = grid.cells()[-1]
    prompt = grid.appearance_prompt(cell, "nurse")
    assert "heavy-set" in prompt and "dark-skinned" in prompt and "nurse" in prompt


def test_unknown_optional_attribute_is_an_error():
    with pytest.raises(ValueError, match="no optional attributes"):
        load_attribute_grid(optional_attributes=["height"])


def test_appearance_prompt_fixes_articles():
    grid = AttributeGrid.from_values({"age": ["elderly"], "race": ["Indian"]}, "a photo of a {age} {race} person, a {concept}")
    assert grid.appearance_prompt({"age": "elderly", "race": "Indian"}, "engineer") == (
        "a photo of an elderly Indian person, an engineer"
    )
    assert fix_articles("a young a old") == "a young an old"


def test_every_template_caption_passes_the_validator():
    writer, validator = TemplateCaptionWriter(), CaptionValidator.default()
    for concept in load_concepts():
        for caption in writer.all_captions(concept):
            assert validator.problems(caption, concept) == [], caption


def test_user_concepts_file_in_json_and_yaml(tmp_path):
    (tmp_path / "mine.json").write_text(json.dumps({"concepts": [{"name": "astronaut", "article": "an"}, "baker"]}))
    (tmp_path / "mine.yaml").write_text("concepts:\n  - {name: astronaut, plural: astronauts, article: an}\n  - baker\n")
    for name in ("mine.json", "mine.yaml"):
        concepts = load_concepts(tmp_path / name)
        assert [(c.name, c.plural, c.article) for c in concepts] == [("astronaut", "astronauts", "an"), ("baker", "bakers", "a")]


def test_concept_subset_by_name_and_unknown_name():
    assert [c.name for c in load_concepts(names=["nurse", "doctor"])] == ["nurse", "doctor"]
    with pytest.raises(ValueError, match="unknown concepts"):
        load_concepts(names=["wizard"])


def test_unknown_concept_file_format_is_a_clear_error(tmp_path):
    path = tmp_path / "concepts.txt"
    path.write_text("doctor\nnurse\n")
    with pytest.raises(ValueError, match=r"unknown file format '\.txt'.*\.yaml"):
        load_concepts(path)


def test_a_file_of_another_kind_is_refused(tmp_path):
    from cf_hf.concepts import DECORATORS_FILE

    with pytest.raises(ValueError, match="expected 'cf_hf-concepts'"):
        load_concepts(DECORATORS_FILE)


def test_empty_grid_is_a_clear_error(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("attributes: {}\n")
    with pytest.raises(ValueError, match="attribute grid is empty"):
        load_attribute_grid(path)
    with pytest.raises(ValueError, match="attribute grid is empty"):
        AttributeGrid.from_values({"gender": []})


def test_grid_template_with_unknown_placeholder_is_refused():
    with pytest.raises(ValueError, match="unknown placeholders"):
        AttributeGrid.from_values({"gender": ["female"]}, "a {gender} {hat}")
