"""Publish the retrieval explorer as a Hub Space (gradio SDK).

`cf_hf.explorer.space.write_space` writes a self-contained Space folder (app, copies of the search
and page code and of the metrics file, requirements, each model's gallery embeddings, local
checkpoints or Hub-id pointers, gallery thumbnails and labels); it is pushed in one commit like the
other artefacts. Keep the folder (`space_dir`) to look at it or run it with `python app.py`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

from hub_scripts._common import HubPushError, PlannedPush, check_repo_id, run_pushes


def plan_explorer_push(space_dir: str | Path, repo_id: str) -> PlannedPush:
    """The push of a folder written by `write_space` to the Space `repo_id`."""
    space_dir = Path(space_dir)
    missing = [name for name in ("app.py", "explorer.json", "README.md") if not (space_dir / name).is_file()]
    if missing:
        raise HubPushError(f"{space_dir} is not an explorer Space folder: it lacks {missing}")
    return PlannedPush(check_repo_id(repo_id), "space", space_dir, "main", "Upload the cf_hf retrieval explorer",
                       space_sdk="gradio")


def push_explorer(models: Mapping[str, str | Path], gallery, repo_id: str, space_dir: str | Path | None = None,
                  embedding_config=None, private: bool = False, dry_run: bool = False, endpoint: str | None = None,
                  **space_options) -> list:
    """Write the explorer Space of `models` over `gallery` (see `write_space`, which takes
    `space_options`) into `space_dir` (unset: a temporary folder) and push it to `repo_id`."""
    from cf_hf.explorer.space import write_space

    check_repo_id(repo_id)
    with tempfile.TemporaryDirectory(prefix="cf_hf-explorer-") as scratch:
        folder = Path(space_dir) if space_dir is not None else Path(scratch) / "space"
        write_space(models, gallery, folder, embedding_config, **space_options)
        return run_pushes([plan_explorer_push(folder, repo_id)], private=private, dry_run=dry_run, endpoint=endpoint)
