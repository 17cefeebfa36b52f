"""Publishing to the Hugging Face Hub: the dataset, the CF_alpha checkpoints, the metric modules.

- `push_dataset(folder, repo_id)`: parquet shards + dataset card → a dataset repo.
- `push_model(path, repo_id, results=...)`: a checkpoint or an interpolation sweep → one model repo,
  one branch per alpha (`alpha-<a>`), `main` = the default alpha; each with its model card.
- `push_metrics(namespace)`: each `evaluate` module → a Space `<namespace>/<name>`.
- `push_explorer(models, gallery, repo_id)`: the retrieval explorer → a self-contained Space.

Command line: `cf-hf push dataset|model|metrics ...` (`cf_hf.cli.push`). Every push is one commit
per repo branch, re-pushing unchanged content makes none, `--dry_run` lists what would be uploaded,
and the token comes from `HF_TOKEN` or `hf auth login` (never printed).
"""

from hub_scripts._common import HubPushError, PushResult
from hub_scripts.push_dataset import push_dataset
from hub_scripts.push_explorer import push_explorer
from hub_scripts.push_metrics import push_metrics
from hub_scripts.push_model import push_model

__all__ = ["HubPushError", "PushResult", "push_dataset", "push_explorer", "push_metrics", "push_model"]
