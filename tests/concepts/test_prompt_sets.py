"""Prompt sets beyond professions (adjectives, activities, stereotype terms), for cf_hf and for the
world: data files that name their source and templates, loaded by `cf-hf evaluate --concepts FILE`."""

from pathlib import Path

import pytest

from cf_hf.cli.evaluate import build_parser, evaluation_config
from cf_hf.concepts import PROMPT_SET_FILES, load_concept_set
from cf_hf.evaluation.queries import build_queries

WORLD_DIR = Path(__file__).resolve().parents[2] / "cf_hf" / "world"
WORLD_SETS = [WORLD_DIR / f"{name}.yaml" for name in ("adjectives", "activities", "stereotype_terms")]
NEW_SETS = [path for name, path in PROMPT_SET_FILES.items() if name != "professions"]


@pytest.mark.parametrize("path", NEW_SETS + WORLD_SETS, ids=lambda path: f"{path.parent.name}/{path.stem}")
def test_every_shipped_prompt_set_names_its_source_and_templates(path):
    concept_set = load_concept_set(path)
    assert concept_set.source and concept_set.templates
    queries = build_queries(concept_set.concepts, concept_set.templates)
    assert len(queries) == len(concept_set.concepts) * len(concept_set.templates)
    assert len({query.text for query in queries}) == len(queries)


def test_berg_adjectives_and_bendvlm_stereotype_terms_are_complete():
    adjectives = load_concept_set(PROMPT_SET_FILES["adjectives"])
    assert len(adjectives.concepts) == 29 and len(adjectives.templates) == 11
    honest = next(concept for concept in adjectives.concepts if concept.name == "honest")
    assert build_queries([honest], ["{article} {concept} person"])[0].text == "an honest person"
    assert len(load_concept_set(PROMPT_SET_FILES["stereotype_terms"]).concepts) == 25


@pytest.mark.parametrize("path", WORLD_SETS, ids=lambda path: path.stem)
def test_world_prompt_sets_use_only_words_the_worlds_tokenizer_knows(path):
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(WORLD_DIR / "tokenizer")
    concept_set = load_concept_set(path)
    for query in build_queries(concept_set.concepts, concept_set.templates):
        pieces = tokenizer.tokenize(query.text)
        assert all(piece.endswith("</w>") for piece in pieces), (query.text, pieces)


def test_evaluate_takes_the_templates_of_a_concepts_file_unless_templates_are_given(tmp_path):
    templates_file = tmp_path / "templates.txt"
    templates_file.write_text("a drawing of {concept}\n")
    base = ["--model", "unused", "--fairface", "unused", "--output_dir", str(tmp_path / "out"),
            "--concepts", str(PROMPT_SET_FILES["adjectives"])]
    config = evaluation_config(build_parser().parse_args(base))
    assert config.fairness.templates == list(load_concept_set(PROMPT_SET_FILES["adjectives"]).templates)
    assert [concept.name for concept in config.fairness.concepts][:2] == ["good", "kind"]
    config = evaluation_config(build_parser().parse_args(base + ["--templates", str(templates_file)]))
    assert config.fairness.templates == ["a drawing of {concept}"]


def test_a_concepts_file_whose_template_has_no_placeholder_is_refused_naming_it(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("concepts: [brave]\ntemplates: ['a photo of a person']\n")
    with pytest.raises(ValueError, match=r"mine.yaml: template 0 \('a photo of a person'\) has no concept placeholder"):
        load_concept_set(path)


@pytest.mark.parametrize(("text", "message"), [
    ("concepts: [brave]\ntemplates: 'a {concept}'\n", "`templates:` must be a non-empty list"),
    ("concepts: [brave]\nsource: ''\n", "`source:` must say where the concepts come from"),
])
def test_a_concepts_file_with_bad_templates_or_source_is_refused(tmp_path, text, message):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_concept_set(path)


def test_a_concepts_file_without_templates_keeps_the_default_ones(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("concepts: [astronaut]\n")
    assert load_concept_set(path).templates is None
    config = evaluation_config(build_parser().parse_args(
        ["--model", "unused", "--fairface", "unused", "--output_dir", str(tmp_path / "out"), "--concepts", str(path)]))
    assert config.fairness.templates[0] == "a photo of {article} {concept}."
