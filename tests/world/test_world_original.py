"""The shipped original CLIP of the world is what the pretraining code produces."""

import numpy as np
import pytest

from cf_hf.world.corpus import CorpusConfig, make_corpus
from cf_hf.world.original import (
    ORIGINAL_DIR,
    _pretrain,
    read_record,
    settings_record,
    shipped_original,
    weights_fingerprint,
)
from cf_hf.world.pretrain import PretrainConfig


@pytest.mark.slow
def test_the_shipped_original_replays_from_the_pretraining_code():
    record = read_record()
    assert record is not None, "no shipped original: run `cf-hf demo --pretrain`"
    corpus_config, pretrain_config = CorpusConfig(), PretrainConfig()
    assert record["settings"] == settings_record(corpus_config, pretrain_config)
    corpus = make_corpus(corpus_config)
    path, why = shipped_original(corpus, corpus_config, pretrain_config)
    assert path == ORIGINAL_DIR, why
    # The first steps of the same schedule give the recorded weights (a shortened replay).
    model, _, _ = _pretrain(corpus, pretrain_config, log=None, stop_after=record["check_steps"])
    replayed = weights_fingerprint(model)
    assert replayed.keys() == record["check_fingerprint"].keys()
    for name, values in record["check_fingerprint"].items():
        np.testing.assert_allclose(replayed[name], values, rtol=1e-4, atol=1e-4, err_msg=name)


def test_the_shipped_original_is_refused_for_other_settings_or_a_changed_corpus(tmp_path):
    corpus_config = CorpusConfig(size=64)
    corpus = make_corpus(corpus_config)
    path, why = shipped_original(corpus, corpus_config, PretrainConfig())
    assert path is None and "other settings" in why
    path, why = shipped_original(corpus, CorpusConfig(), PretrainConfig())
    assert path is None and "another corpus" in why
    assert shipped_original(corpus, corpus_config, PretrainConfig(), path=tmp_path) == (None, "no shipped original")
