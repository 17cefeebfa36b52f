"""The on-disk layout of a generation run, and the only code that reads or writes it.

```
<output_dir>/
  manifest.json                 what this run is (config, components, fingerprint); at the end,
                                the list of shards with their checksums and the totals
  captions/0000-doctor.json     the captions of one concept
  shards/shard-00000.parquet    finished rows of a slice of base images (PNG bytes + metadata)
  shards/shard-00000.json       the shard's receipt: checksum, row counts, rejected images
  processes/process-00001.json  with several processes: how each one ended (done, failed with
                                its error, or stopped by another's failure); cleared at each start
```
Every file is written atomically (temporary file + rename). A shard counts as finished only when
its receipt exists and the parquet file's sha256 matches it; anything else is regenerated, never
loaded. Receipts are per shard, so several processes write without locking.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

from cf_hf.generation.runtime import sha256_of, write_atomically

RUN_FORMAT = "cf_hf-counterfactual-run"
RUN_FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
CAPTIONS_DIR = "captions"
SHARDS_DIR = "shards"
PROCESSES_DIR = "processes"
PROCESS_STATUSES = ("done", "failed", "stopped")
# The top-level entries of a run folder (`cf-hf generate` claims them as its own; `dataset` is the
# default export folder).
RUN_FOLDER_ENTRIES = (MANIFEST_NAME, CAPTIONS_DIR, SHARDS_DIR, PROCESSES_DIR, "dataset")


class RunFolderError(ValueError):
    """The output folder cannot be used for this run (another run's manifest, a corrupt run, ...)."""


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "concept"


def _dumps(data) -> bytes:
    # Key order is kept: the order of attributes and decorator fields is part of the run.
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _read_json(path: Path):
    """The JSON in `path`, or None if it is missing or unreadable (a partial or corrupt file)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    # -- manifest -------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_NAME

    def read_manifest(self) -> dict | None:
        if not self.manifest_path.exists():
            return None
        manifest = _read_json(self.manifest_path)
        if not isinstance(manifest, dict) or manifest.get("format") != RUN_FORMAT:
            raise RunFolderError(f"{self.manifest_path} is not a cf_hf generation manifest.")
        return manifest

    def write_manifest(self, manifest: dict) -> None:
        write_atomically(self.manifest_path, _dumps(manifest))

    def clean_temporary_files(self) -> None:
        """Remove the temporary files a killed run left behind (never a finished file)."""
        for folder in (self.path / CAPTIONS_DIR, self.path / SHARDS_DIR):
            if folder.is_dir():
                for leftover in folder.glob(".*.tmp"):
                    leftover.unlink(missing_ok=True)

    # -- captions -------------------------------------------------------------------------------
    def captions_path(self, concept_index: int, concept_name: str) -> Path:
        return self.path / CAPTIONS_DIR / f"{concept_index:04d}-{_slug(concept_name)}.json"

    def read_captions(self, concept_index: int, concept_name: str, count: int) -> list[str] | None:
        """The stored captions of a concept, or None if missing, partial or not what is expected."""
        data = _read_json(self.captions_path(concept_index, concept_name))
        if not isinstance(data, dict) or data.get("concept") != concept_name:
            return None
        captions = data.get("captions")
        if not isinstance(captions, list) or len(captions) != count or not all(isinstance(c, str) for c in captions):
            return None
        return captions

    def write_captions(self, concept_index: int, concept_name: str, captions: list[str]) -> None:
        data = {"concept": concept_name, "captions": list(captions)}
        write_atomically(self.captions_path(concept_index, concept_name), _dumps(data))

    # -- shards ---------------------------------------------------------------------------------
    @staticmethod
    def shard_name(index: int) -> str:
        return f"shard-{index:05d}"

    def shard_path(self, index: int) -> Path:
        return self.path / SHARDS_DIR / f"{self.shard_name(index)}.parquet"

    def receipt_path(self, index: int) -> Path:
        return self.path / SHARDS_DIR / f"{self.shard_name(index)}.json"

    def write_shard(self, index: int, table, receipt: dict) -> dict:
        """Write a shard (a `pyarrow.Table`), then its receipt; returns the receipt as stored."""
        import pyarrow.parquet as pq

        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        data = buffer.getvalue()
        write_atomically(self.shard_path(index), data)
        receipt = {**receipt, "shard": self.shard_name(index), "rows": table.num_rows, "sha256": hashlib.sha256(data).hexdigest()}
        write_atomically(self.receipt_path(index), _dumps(receipt))
        return receipt

    def shard_status(self, index: int) -> tuple[str, dict | None]:
        """("finished", receipt), ("missing", None) or ("corrupt", None) for one shard.

        Corrupt: a receipt whose shard is missing or does not match its checksum, or an
        unreadable receipt. Missing: nothing, or a shard without a receipt (killed before it).
        """
        receipt_path, shard_path = self.receipt_path(index), self.shard_path(index)
        if not receipt_path.exists():
            return "missing", None
        receipt = _read_json(receipt_path)
        if not isinstance(receipt, dict) or "sha256" not in receipt:
            return "corrupt", None
        if not shard_path.exists() or sha256_of(shard_path) != receipt["sha256"]:
            return "corrupt", None
        return "finished", receipt

    def verified_shards(self, num_shards: int) -> list[tuple[Path, dict]]:
        """Every shard's path and receipt, checksums verified; raises if any is not finished."""
        shards = []
        for index in range(num_shards):
            status, receipt = self.shard_status(index)
            if status != "finished":
                raise RunFolderError(
                    f"{self.shard_path(index)} is {status}: the run is incomplete or damaged. "
                    "Run the generator again with resume to (re)generate it."
                )
            shards.append((self.shard_path(index), receipt))
        return shards

    def iter_rows(self, num_shards: int, columns: list[str] | None = None) -> Iterator[dict]:
        """The rows of every verified shard, in order (images as PNG bytes)."""
        import pyarrow.parquet as pq

        for path, _ in self.verified_shards(num_shards):
            table = pq.read_table(path, columns=columns)
            yield from table.to_pylist()

    # -- processes ------------------------------------------------------------------------------
    def process_record_path(self, index: int) -> Path:
        return self.path / PROCESSES_DIR / f"process-{index:05d}.json"

    def write_process_record(self, index: int, status: str, error: str | None = None) -> None:
        """Record how process `index` ended: "done", "failed" (with its error) or "stopped"."""
        if status not in PROCESS_STATUSES:
            raise ValueError(f"unknown process status {status!r}; one of {PROCESS_STATUSES}.")
        write_atomically(self.process_record_path(index), _dumps({"process": index, "status": status, "error": error}))

    def process_records(self) -> dict[int, dict]:
        """The records written so far, by process index (unreadable ones are skipped)."""
        records = {}
        folder = self.path / PROCESSES_DIR
        if folder.is_dir():
            for path in sorted(folder.glob("process-*.json")):
                record = _read_json(path)
                if isinstance(record, dict) and isinstance(record.get("process"), int):
                    records[record["process"]] = record
        return records

    def clear_process_records(self) -> None:
        """Forget how the processes of an earlier launch ended (called once, before a run starts)."""
        folder = self.path / PROCESSES_DIR
        if folder.is_dir():
            for path in folder.glob("process-*.json"):
                path.unlink(missing_ok=True)
