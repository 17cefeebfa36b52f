"""`CounterfactualDataset`: a `datasets.GeneratorBasedBuilder` over a finished generation run.

```python
builder = CounterfactualDataset(run_dir="outputs/run", test_size=0.1)
builder.download_and_prepare()
dataset = builder.as_dataset()          # DatasetDict: train / test, split by group_id
```
`datasets` ≥ 4 no longer runs loading scripts from a folder or the Hub, so the builder is used from
Python (and by `export_dataset`, which writes the parquet shards + card that load with no code).
Features follow the run: `concept` and every attribute of the grid are `ClassLabel`s, decorators
are `decorator_<field>` strings, images decode to PIL.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import datasets

from cf_hf.generation.orchestration.config import DECORATOR_PREFIX
from cf_hf.generation.run_folder import RunFolder, RunFolderError

DESCRIPTION = (
    "Counterfactual image-caption groups for debiasing CLIP (They're All Doctors, arXiv 2406.11331): "
    "each group holds one generated base image and counterfactuals whose person was repainted with "
    "another gender presentation, race/ethnicity and age, all sharing one neutral caption."
)
CITATION = """@article{theyrealldoctors2024,
  title   = {They're All Doctors: Synthesizing Diverse Counterfactuals to Mitigate Associative Bias},
  journal = {arXiv preprint arXiv:2406.11331},
  year    = {2024}
}"""
DEFAULT_TEST_SIZE = 0.1


def finished_manifest(run_dir: str | Path) -> dict:
    """The manifest of a complete run; a clear error for an unfinished or missing one."""
    manifest = RunFolder(run_dir).read_manifest()
    if manifest is None:
        raise RunFolderError(f"{run_dir} holds no generation run (no manifest.json).")
    if not manifest.get("complete"):
        raise RunFolderError(f"{run_dir}: the run is not finished; run the generator again with resume.")
    return manifest


def dataset_features(manifest: dict) -> datasets.Features:
    """The dataset's features for a run (column order as in the run's shards)."""
    config = manifest["config"]
    attributes = config["attribute_grid"]["attributes"]
    return datasets.Features(
        {
            "image": datasets.Image(),
            "caption": datasets.Value("string"),
            "concept": datasets.ClassLabel(names=[concept["name"] for concept in config["concepts"]]),
            "group_id": datasets.Value("string"),
            "is_base": datasets.Value("bool"),
            **{name: datasets.ClassLabel(names=spec["values"]) for name, spec in attributes.items()},
            **{DECORATOR_PREFIX + name: datasets.Value("string") for name in config["decorators"]},
            "seed": datasets.Value("int64"),
            "mask_area": datasets.Value("float32"),
            "prompt": datasets.Value("string"),
            "source_model": datasets.Value("string"),
        }
    )


def split_groups(group_ids: Iterable[str], test_size: float, seed: int = 0) -> tuple[set[str], set[str]]:
    """(train, test) group ids: whole groups only, the test share rounded up (≥ 1 group when
    `test_size` > 0 and there are ≥ 2 groups), chosen by a seeded hash — stable as the run grows."""
    if not 0.0 <= test_size < 1.0:
        raise ValueError(f"test_size must be in [0, 1), got {test_size}.")
    ordered = sorted(set(group_ids), key=lambda group: hashlib.sha256(f"{seed}:{group}".encode()).hexdigest())
    count = math.ceil(len(ordered) * test_size) if len(ordered) > 1 else 0
    return set(ordered[count:]), set(ordered[:count])


@dataclass
class CounterfactualConfig(datasets.BuilderConfig):
    """`run_dir`: a finished generation run; `test_size`: share of groups in the test split."""

    run_dir: str | None = None
    test_size: float = DEFAULT_TEST_SIZE
    split_seed: int = 0


class CounterfactualDataset(datasets.GeneratorBasedBuilder):
    BUILDER_CONFIG_CLASS = CounterfactualConfig
    VERSION = datasets.Version("1.0.0")

    def _manifest(self) -> dict:
        if not self.config.run_dir:
            raise ValueError("CounterfactualDataset needs run_dir=<a finished generation run folder>.")
        return finished_manifest(self.config.run_dir)

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=DESCRIPTION, features=dataset_features(self._manifest()), citation=CITATION
        )

    def _split_generators(self, dl_manager):
        manifest = self._manifest()
        folder = RunFolder(self.config.run_dir)
        group_ids = [row["group_id"] for row in folder.iter_rows(manifest["num_shards"], columns=["group_id"])]
        train, test = split_groups(group_ids, self.config.test_size, self.config.split_seed)
        splits = [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"groups": train})]
        if test:
            splits.append(datasets.SplitGenerator(name=datasets.Split.TEST, gen_kwargs={"groups": test}))
        return splits

    def _generate_examples(self, groups: set[str]):
        manifest = self._manifest()
        for key, row in enumerate(RunFolder(self.config.run_dir).iter_rows(manifest["num_shards"])):
            if row["group_id"] in groups:
                row["image"] = {"bytes": row["image"], "path": None}
                yield key, row
