"""Publish the counterfactual dataset: parquet shards + a dataset card, to a dataset repo.

The folder is what the dataset builder writes for the Hub: a `README.md` dataset card (its YAML
`configs:` tells `load_dataset` where the shards are) and parquet files (usually under `data/`). It
is pushed as it is, in one commit to `main`, so that `load_dataset("org/they-are-all-doctors")`
works with no code and no `trust_remote_code`, streaming included. Before anything is sent the
shards are checked for the columns the method needs (`group_id` above all: without it the
counterfactual loss has no positives).
"""

from __future__ import annotations

from pathlib import Path

from dataset_builder.export import EXPORT_RECORD
from hub_scripts._common import HubPushError, PlannedPush, check_repo_id, run_pushes

REQUIRED_COLUMNS = ("image", "caption", "concept", "group_id", "is_base")


def check_dataset_folder(folder: str | Path) -> list[Path]:
    """The parquet shards of a publishable dataset folder; a clear error if it is not one."""
    import pyarrow.parquet as pq

    folder = Path(folder)
    if not folder.is_dir():
        raise HubPushError(f"{folder} is not a folder")
    if not (folder / "README.md").is_file():
        raise HubPushError(f"{folder} has no README.md dataset card (with the YAML `configs:` that load_dataset reads)")
    shards = sorted(folder.rglob("*.parquet"))
    if not shards:
        raise HubPushError(f"{folder} holds no parquet shards: write the dataset with the dataset builder first")
    for shard in shards:
        columns = set(pq.read_schema(shard).names)
        missing = [name for name in REQUIRED_COLUMNS if name not in columns]
        if missing:
            raise HubPushError(
                f"{shard.relative_to(folder)} lacks the column(s) {missing} of the counterfactual dataset schema "
                f"(needs {list(REQUIRED_COLUMNS)}): group_id ties each base image to its counterfactuals"
            )
    return shards


def plan_dataset_push(folder: str | Path, repo_id: str) -> list[PlannedPush]:
    check_repo_id(repo_id)
    shards = check_dataset_folder(folder)
    message = f"Upload counterfactual dataset ({len(shards)} parquet shard{'s' * (len(shards) != 1)})"
    # The export's own record of the files it wrote is local bookkeeping, not part of the dataset.
    return [PlannedPush(repo_id, "dataset", Path(folder), "main", message, exclude=(EXPORT_RECORD,))]


def push_dataset(folder: str | Path, repo_id: str, private: bool = False, dry_run: bool = False,
                 endpoint: str | None = None) -> list:
    """Publish a dataset folder to the dataset repo `repo_id` in one commit. Returns the `PushResult`s."""
    return run_pushes(plan_dataset_push(folder, repo_id), private=private, dry_run=dry_run, endpoint=endpoint)
