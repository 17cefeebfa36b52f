"""GroupBatchSampler and CounterfactualCollator."""

from __future__ import annotations

import logging
from collections import Counter

import pytest
import torch

from cf_hf.methods.counterfactual.sampler import (
    CounterfactualCollator,
    GroupBatchSampler,
    caption_with_suffixes,
    check_columns,
    group_index,
)

# 6 groups: sizes 4, 4, 6, 3 (small), 2 (small), 1 (singleton); string ids as the dataset has them.
SIZES = {"a": 4, "b": 4, "c": 6, "d": 3, "e": 2, "f": 1}
GROUP_IDS = [group for group, size in SIZES.items() for _ in range(size)]


def _groups_of(batch):
    return Counter(GROUP_IDS[row] for row in batch)


def test_batches_hold_p_groups_of_k_members():
    sampler = GroupBatchSampler(GROUP_IDS, groups_per_batch=2, group_size=2, seed=0)
    for batch in sampler:
        assert len(batch) == 4
        assert all(count % 2 == 0 for count in _groups_of(batch).values())


def test_every_epoch_covers_every_group_and_every_row():
    sampler = GroupBatchSampler(GROUP_IDS, groups_per_batch=2, group_size=3, seed=1)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        rows = {row for batch in sampler for row in batch}
        assert {GROUP_IDS[row] for row in rows} == set("abcde")
        assert rows == {row for row, group in enumerate(GROUP_IDS) if group != "f"}


def test_sampling_is_deterministic_given_seed_and_epoch():
    def epoch_batches(seed, epoch):
        sampler = GroupBatchSampler(GROUP_IDS, groups_per_batch=2, group_size=2, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert epoch_batches(0, 0) == epoch_batches(0, 0)
    assert epoch_batches(0, 0) != epoch_batches(1, 0)
    assert epoch_batches(0, 0) != epoch_batches(0, 1)


def test_small_groups_are_topped_up_with_replacement_and_logged(caplog):
    with caplog.at_level(logging.INFO, logger="cf_hf.methods.counterfactual.sampler"):
        sampler = GroupBatchSampler(GROUP_IDS, groups_per_batch=1, group_size=4, small_groups="replace")
    assert "1 single-image groups dropped; 2 groups smaller than group_size=4 topped up" in caplog.text
    batches = list(sampler)
    assert all(len(batch) == 4 and len(_groups_of(batch)) == 1 for batch in batches)
    assert {group for batch in batches for group in _groups_of(batch)} == set("abcde")


def test_small_groups_can_be_dropped(caplog):
    with caplog.at_level(logging.INFO, logger="cf_hf.methods.counterfactual.sampler"):
        sampler = GroupBatchSampler(GROUP_IDS, groups_per_batch=1, group_size=4, small_groups="drop")
    assert "2 groups smaller than group_size=4 dropped" in caplog.text
    assert {group for batch in sampler for group in _groups_of(batch)} == set("abc")


def test_all_singleton_groups_are_an_error():
    with pytest.raises(ValueError, match="no usable group"):
        GroupBatchSampler(["x", "y", "z"], groups_per_batch=1, group_size=2)


@pytest.mark.parametrize("kwargs", [{"group_size": 1}, {"groups_per_batch": 0}, {"small_groups": "keep"}])
def test_bad_sampler_settings_are_errors(kwargs):
    with pytest.raises(ValueError):
        GroupBatchSampler(GROUP_IDS, **({"groups_per_batch": 1, "group_size": 2} | kwargs))


def test_processes_get_whole_groups_and_equal_batch_counts():
    ids = [f"g{group}" for group in range(7) for _ in range(2)]  # 7 units of 2: padding needed
    shards = [
        list(GroupBatchSampler(ids, groups_per_batch=2, group_size=2, seed=3, num_replicas=2, rank=rank))
        for rank in range(2)
    ]
    assert len(shards[0]) == len(shards[1]) == 2
    covered = set()
    for batch_rank0, batch_rank1 in zip(*shards):
        groups0 = Counter(ids[row] for row in batch_rank0)
        groups1 = Counter(ids[row] for row in batch_rank1)
        assert all(count == 2 for count in groups0.values()) and all(count == 2 for count in groups1.values())
        covered |= set(groups0) | set(groups1)
    assert covered == set(ids)


def test_group_index_maps_ids_to_consecutive_integers_independent_of_order():
    assert group_index(["b", "a", "b", "c"]) == group_index(["c", "b", "a"]) == {"a": 0, "b": 1, "c": 2}


def test_missing_group_id_column_is_an_error():
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['group_id'\]"):
        check_columns(["image", "caption"])


def test_collator_tokenises_processes_and_maps_group_ids(tiny_clip_dir):
    from PIL import Image
    from transformers import CLIPProcessor

    processor = CLIPProcessor.from_pretrained(tiny_clip_dir)
    rows = [
        {"image": Image.new("RGB", (40, 48), color), "caption": caption, "group_id": group}
        for color, caption, group in [
            ("red", "a doctor", "scene-2"),
            ("blue", "a doctor", "scene-2"),
            ("green", "a chef in a kitchen", "scene-10"),
        ]
    ]
    batch = CounterfactualCollator(processor, group_index(["scene-2", "scene-10"]))(rows)
    assert batch["pixel_values"].shape == (3, 3, 32, 32)
    assert batch["input_ids"].shape == batch["attention_mask"].shape and batch["input_ids"].shape[0] == 3
    assert batch["group_ids"].dtype == torch.long
    assert batch["group_ids"][0] == batch["group_ids"][1] != batch["group_ids"][2]
    assert batch["return_loss"] is True


def test_caption_suffix_columns_follow_the_caption_and_skip_empty_values():
    row = {"caption": "a doctor", "decorator_framing": "close-up", "decorator_lighting": None, "lighting": ""}
    assert caption_with_suffixes(row) == "a doctor"
    assert (
        caption_with_suffixes(row, ["decorator_framing", "decorator_lighting", "lighting"])
        == "a doctor, close-up"
    )
    with pytest.raises(ValueError, match="'seed' holds 3"):
        caption_with_suffixes({"caption": "a doctor", "seed": 3}, ["seed"])


def test_missing_caption_suffix_column_is_an_error():
    with pytest.raises(ValueError, match=r"caption_suffix_columns names column\(s\) \['decorator_camera'\]"):
        check_columns(["image", "caption", "group_id"], ["decorator_camera"])


def test_collator_tokenises_captions_with_their_suffixes(tiny_clip_dir):
    from PIL import Image
    from transformers import CLIPProcessor

    processor = CLIPProcessor.from_pretrained(tiny_clip_dir)
    row = {"image": Image.new("RGB", (32, 32)), "caption": "a doctor", "group_id": "g", "framing": "close-up"}
    plain = CounterfactualCollator(processor, {"g": 0})([row])
    suffixed = CounterfactualCollator(processor, {"g": 0}, ["framing"])([row])
    expected = processor.tokenizer(["a doctor, close-up"], return_tensors="pt")["input_ids"]
    assert torch.equal(suffixed["input_ids"], expected)
    assert suffixed["input_ids"].shape[1] > plain["input_ids"].shape[1]


def test_rows_without_group_id_are_refused_by_name():
    group_ids = ["a", None, "a", "b", float("nan"), "b", ""]
    with pytest.raises(ValueError, match=r"'group_id' is missing in 3 row\(s\) \(1, 4, 6\)"):
        GroupBatchSampler(group_ids, groups_per_batch=1, group_size=2)
