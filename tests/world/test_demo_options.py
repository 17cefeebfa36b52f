"""`cf-hf demo` options and where its original CLIP comes from: the shipped one when the run's
corpus and pretraining settings match it, pretrained in the run otherwise."""

from __future__ import annotations

import pytest

from cf_hf.cli import main as cf_hf_main
from cf_hf.cli.demo import build_parser, config_from_args
from cf_hf.world.corpus import make_corpus
from cf_hf.world.demo import DemoConfig
from cf_hf.world.demo.run import Progress, prepare_original
from cf_hf.world.demo.stages import PRETRAINED, SHIPPED, find_shipped_original
from cf_hf.world.original import read_record, settings_record, shipped_original

# A shipped original small enough to pretrain in a test: the quick preset's model on a tiny corpus.
TINY = ["--quick", "--corpus_size", "200", "--pretrain_steps", "30"]


def _config(*argv: str) -> DemoConfig:
    return config_from_args(build_parser().parse_args(list(argv)))


@pytest.fixture(scope="module")
def tiny_shipped(tmp_path_factory):
    """A shipped original written by `cf-hf demo --pretrain` (the real producer) to a temporary folder."""
    folder = tmp_path_factory.mktemp("shipped") / "original_clip"
    assert cf_hf_main(["demo", *TINY, "--pretrain", "--quiet", "--original_dir", str(folder)]) == 0
    return folder, _config(*TINY)


def test_defaults_are_one_seed_without_ablations():
    config = _config()
    assert (config.seeds, config.ablations, config.pretrain_original) == (1, False, False)
    assert (DemoConfig().seeds, DemoConfig().ablations) == (1, False)


def test_seeds_and_ablations_bring_back_the_full_measurement():
    config = _config("--seeds", "3", "--ablations")
    assert (config.seeds, config.ablations) == (3, True)
    quick = _config("--quick")
    assert (quick.seeds, quick.ablations) == (1, False)
    assert _config("--pretrain_original").pretrain_original


def test_seeds_below_one_are_refused(capsys):
    with pytest.raises(SystemExit):
        cf_hf_main(["demo", "--seeds", "0"])
    assert "--seeds must be >= 1" in capsys.readouterr().err


def test_the_full_and_quick_demos_have_the_shipped_originals_settings():
    record = read_record()
    assert record is not None, "no shipped original: run `cf-hf demo --pretrain`"
    full, quick = DemoConfig.full(), DemoConfig.quick()
    assert settings_record(full.corpus, full.pretrain) == record["settings"], (
        "the demo's corpus or pretraining settings changed: run `cf-hf demo --pretrain` to ship a matching original"
    )
    # --quick starts from the shipped original too: a small one pretrained in the run learned too
    # little bias to show a reduction on every machine (docs/reproducibility.md).
    assert settings_record(quick.corpus, quick.pretrain) == record["settings"]


def test_pretrain_writes_an_original_that_shipped_original_accepts(tiny_shipped):
    folder, config = tiny_shipped
    corpus = make_corpus(config.corpus)
    assert shipped_original(corpus, config.corpus, config.pretrain, path=folder) == (folder, "shipped")
    assert find_shipped_original(config, corpus, folder) == (folder, "shipped")
    # The demo itself checks settings and weights only (the test suite checks the corpus).
    assert find_shipped_original(config, shipped_dir=folder) == (folder, "shipped")


def test_the_demo_pretrains_when_asked_or_when_the_settings_differ(tiny_shipped):
    folder, config = tiny_shipped
    corpus = make_corpus(config.corpus)
    forced = _config(*TINY, "--pretrain_original")
    path, why = find_shipped_original(forced, corpus, folder)
    assert path is None and "--pretrain_original" in why
    other = _config(*TINY[:-1], "31")
    path, why = find_shipped_original(other, corpus, folder)
    assert path is None and "other settings" in why


def test_a_run_copies_the_shipped_original_and_says_so(tiny_shipped, tmp_path):
    from transformers import CLIPModel

    folder, config = tiny_shipped
    original_dir = tmp_path / "run" / "original"
    source = prepare_original(config, original_dir, Progress(3, quiet=True), folder)
    assert source["source"] == SHIPPED
    assert sorted(path.name for path in original_dir.iterdir()) == sorted(path.name for path in folder.iterdir())
    CLIPModel.from_pretrained(original_dir)


def test_a_run_pretrains_with_the_reason_when_the_shipped_original_does_not_match(tiny_shipped, tmp_path):
    folder, _ = tiny_shipped
    config = _config("--quick", "--corpus_size", "200", "--pretrain_steps", "25")
    original_dir = tmp_path / "original"
    original_dir.mkdir()
    (original_dir / "shipped.json").write_text("{}")  # left by an earlier run: must not remain
    source = prepare_original(config, original_dir, Progress(3, quiet=True), folder)
    assert source == {"source": PRETRAINED, "reason": "the shipped original was pretrained with other settings"}
    assert (original_dir / "model.safetensors").is_file() and not (original_dir / "shipped.json").exists()


def test_bias_alignment_trains_the_papers_model_unless_told_which_variants():
    from cf_hf.methods.bias_alignment.fit import VARIANTS
    from cf_hf.world.demo.config import BIAS_ALIGNMENT_VARIANTS

    assert BIAS_ALIGNMENT_VARIANTS == tuple(VARIANTS)
    from cf_hf.cli.compare import build_parser as compare_parser

    choices = next(action.choices for action in compare_parser()._actions if action.dest == "bias_alignment_variants")
    assert tuple(choices) == tuple(VARIANTS)
    assert _config("--bias_alignment").bias_alignment_variants == ("bias_alignment",)
    chosen = _config("--bias_alignment", "--bias_alignment_variants", *BIAS_ALIGNMENT_VARIANTS)
    assert (chosen.bias_alignment, chosen.bias_alignment_variants) == (True, BIAS_ALIGNMENT_VARIANTS)
    with pytest.raises(ValueError, match="needs --bias_alignment"):
        _config("--bias_alignment_variants", "bias_alignment_ba_only")
    with pytest.raises(ValueError, match="twice"):
        _config("--bias_alignment", "--bias_alignment_variants", "bias_alignment", "bias_alignment")
