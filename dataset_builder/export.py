"""Export a finished run as a Hub-ready dataset folder: parquet shards under `data/` + `README.md`
(the dataset card, with YAML `configs:`), so that `datasets.load_dataset(folder)` — and, once
pushed, `datasets.load_dataset("org/they-are-all-doctors")` — works with no code.

The export also writes `.cf_hf_export.json`: the run it came from and the checksum of every file
it wrote. A later export uses it to replace only those files: exporting the same run again
replaces its own files, and anything else in the folder (the user's own files, or cf_hf's files
edited since) is never deleted without `overwrite=True` (`--overwrite`), and even then only
what an export wrote is removed.
"""

from __future__ import annotations

import json
import math
import string
import tempfile
from functools import cache
from importlib import metadata as package_metadata
from pathlib import Path

import yaml

from cf_hf import __version__
from cf_hf.generation.runtime import sha256_of, write_atomically
from dataset_builder.builder import CITATION, DEFAULT_TEST_SIZE, CounterfactualDataset, finished_manifest

DEFAULT_REPO_ID = "org/they-are-all-doctors"
CARD_TEMPLATE = Path(__file__).resolve().parent / "card_template.md"
MODEL_LICENSES = Path(__file__).resolve().parent / "model_licenses.yaml"
ROWS_PER_PARQUET_SHARD = 2000
DATA_DIR = "data"
CARD_NAME = "README.md"
EXPORT_RECORD = ".cf_hf_export.json"
EXPORT_FORMAT = "cf_hf-dataset-export"
UNKNOWN_LICENSE = "unknown"
# The stages whose outputs are in the data (captions, images): their models' licences are the
# card's `license:`. The segmenter only decides where to paint; it is listed in the card's table.
LICENSED_STAGES = ("caption_writer", "text_to_image", "inpainter")
STAGE_NAMES = {"caption_writer": "captions", "text_to_image": "base images", "segmenter": "person masks",
               "inpainter": "counterfactuals"}  # fmt: skip


class ExportFolderError(FileExistsError):
    """The export folder holds files the export would have to delete or replace; the message names them."""


def _size_category(rows: int) -> str:
    for limit, name in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if rows < limit:
            return name
    return "n>1M"


def _describe(provenance: dict) -> str:
    main = provenance.get("model_id") or provenance.get("caption_writer") or provenance.get("class", "?")
    rest = ", ".join(f"{key}={value}" for key, value in provenance.items() if value != main)
    return f"{main} ({rest})" if rest else main


def cf_hf_reference() -> str:
    """How the card names cf_hf: a link when the package metadata gives a home page, the version always."""
    try:
        fields = package_metadata.metadata("cf_hf")
    except package_metadata.PackageNotFoundError:
        fields = None
    urls = [] if fields is None else [fields.get("Home-page"), *(
        entry.split(",", 1)[-1].strip() for entry in fields.get_all("Project-URL") or []
    )]  # fmt: skip
    url = next((url for url in urls if url and url.upper() != "UNKNOWN"), None)
    name = f"[cf_hf]({url})" if url else "cf_hf"
    return f"{name} (version {__version__})"


@cache
def _known_licenses() -> dict[str, dict[str, str]]:
    return yaml.safe_load(MODEL_LICENSES.read_text(encoding="utf-8"))


def _card_license(model_id: str) -> dict[str, str] | None:
    """The `license` (and `license_name`) a model's own card states: a local folder's README.md,
    or the README.md in the Hub cache. Never goes online."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.repocard import metadata_load

    card = Path(model_id).expanduser() / CARD_NAME
    if not card.is_file():
        try:
            cached = try_to_load_from_cache(model_id, CARD_NAME)
        except ValueError:  # not a valid Hub id either
            cached = None
        card = Path(cached) if isinstance(cached, str) else None
    found = metadata_load(card) if card is not None else None
    if not found or not found.get("license"):
        return None
    return {key: str(found[key]) for key in ("license", "license_name") if found.get(key)}


def model_license(model_id: str) -> dict[str, str] | None:
    """A model's licence, `{"license": id}` plus `license_name` for "other"; None when unknown."""
    return _known_licenses().get(model_id) or _card_license(model_id)


def _license_text(license: dict[str, str] | None) -> str:
    if license is None:
        return f"{UNKNOWN_LICENSE} — check the model's card"
    name = license.get("license_name")
    return f"`{license['license']}` ({name})" if name else f"`{license['license']}`"


def run_licenses(components: dict[str, dict]) -> tuple[dict, list[tuple[str, str, str]]]:
    """The card's licence metadata and its table rows (stage, model, licence) for a run's components.

    Metadata: the one licence of the models whose outputs are in the data, or the list of them
    when they differ (`unknown` for a model whose licence is not known).
    """
    rows, licenses = [], []
    for stage, provenance in components.items():
        model_id = provenance.get("model_id")
        if model_id is None:
            rows.append((STAGE_NAMES.get(stage, stage), _describe(provenance), "— (no pretrained model)"))
            continue
        license = model_license(model_id)
        rows.append((STAGE_NAMES.get(stage, stage), f"`{model_id}`", _license_text(license)))
        if stage in LICENSED_STAGES:
            entry = license or {"license": UNKNOWN_LICENSE}
            if entry not in licenses:
                licenses.append(entry)
    if not licenses:
        return {"license": UNKNOWN_LICENSE}, rows
    ids = list(dict.fromkeys(entry["license"] for entry in licenses))
    header: dict = {"license": ids[0] if len(ids) == 1 else ids}
    names = [entry["license_name"] for entry in licenses if "license_name" in entry]
    if len(names) == 1 and ids.count("other") == 1:
        header["license_name"] = names[0]
    return header, rows


def render_card(manifest: dict, split_stats: dict[str, dict[str, int]], info, repo_id: str, verification=None) -> str:
    """The dataset card (README.md) for an exported run.

    `info` is the `datasets.DatasetInfo` written as the card's `dataset_info` (features, splits and
    sizes), or just the `datasets.Features`; `verification` a `VerificationSummary` (None: the
    card says the rows are unchecked).
    """
    from datasets import DatasetInfo

    from cf_hf.generation.verification.report import render_verification_section

    if not isinstance(info, DatasetInfo):
        info = DatasetInfo(features=info)
    config = manifest["config"]
    grid = config["attribute_grid"]["attributes"]
    rows = sum(stats["rows"] for stats in split_stats.values())
    components = manifest["components"]
    license_header, license_rows = run_licenses(components)
    header = {
        "pretty_name": "They're All Doctors — counterfactual images",
        **license_header,
        "language": ["en"],
        "task_categories": ["zero-shot-image-classification", "text-to-image", "image-to-text"],
        "tags": ["counterfactual", "fairness", "bias", "synthetic", "clip", "cf_hf"],
        "size_categories": [_size_category(rows)],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": split, "path": f"{DATA_DIR}/{split}-*"} for split in split_stats],
            }
        ],
        # Features, split sizes and byte counts, as on the Hub. The sizes also key `load_dataset(folder)`'s
        # cache, which otherwise sees only the folder's name and this YAML (not the data files).
        "dataset_info": info._to_yaml_dict(),
    }
    mask = config["mask_postprocessing"]
    rejected = manifest.get("totals", {}).get("rejected") or {}
    values = {
        "yaml_header": yaml.safe_dump(header, sort_keys=False, allow_unicode=True).strip(),
        "pretty_name": header["pretty_name"],
        "cf_hf": cf_hf_reference(),
        "license_table": "\n".join(f"| {stage} | {model} | {license} |" for stage, model, license in license_rows),
        "repo_id": repo_id,
        "example_concept": config["concepts"][0]["name"],
        "split_table": "\n".join(
            f"| {split} | {s['rows']} | {s['groups']} | {s['base_images']} | {s['rows'] - s['base_images']} |"
            for split, s in split_stats.items()
        ),
        "num_concepts": len(config["concepts"]),
        "concepts": ", ".join(concept["name"] for concept in config["concepts"]),
        "attributes": "; ".join(f"`{name}`: {', '.join(spec['values'])}" for name, spec in grid.items()),
        "attribute_names": ", ".join(f"`{name}`" for name in grid),
        "prompt_template": config["attribute_grid"]["prompt_template"],
        "decorators": "; ".join(
            f"`{name}`: {', '.join(values)}" for name, values in config["decorators"].items()
        )
        or "none",
        "rejected": ", ".join(f"{reason}: {count}" for reason, count in rejected.items()) or "none",
        "caption_writer": _describe(components["caption_writer"]),
        "text_to_image": _describe(components["text_to_image"]),
        "segmenter": _describe(components["segmenter"]),
        "inpainter": _describe(components["inpainter"]),
        "mask_settings": ", ".join(f"{key} {value}" for key, value in mask.items()),
        "fingerprint": manifest["fingerprint"],
        "seed": config["seed"],
        "citation": CITATION,
        "verification": render_verification_section(verification),
    }
    return string.Template(CARD_TEMPLATE.read_text(encoding="utf-8")).substitute(values)


def _read_export_record(output_dir: Path) -> dict | None:
    try:
        record = json.loads((output_dir / EXPORT_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != EXPORT_FORMAT or not isinstance(record.get("files"), dict):
        return None
    return record


def _listing(paths: list[str], limit: int = 5) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _previous_export_files(output_dir: Path, fingerprint: str, planned: list[str], overwrite: bool) -> list[str]:
    """The files an earlier export wrote in `output_dir`, which this one replaces. Raises
    `ExportFolderError` if anything else is in the way: a file cf_hf did not write where the export
    would write one (always), and without `overwrite` a non-empty folder that holds no export, the
    export of another run, or exported files edited since."""
    if not output_dir.exists():
        return []
    if not output_dir.is_dir():
        raise ExportFolderError(f"export folder {output_dir} is a file: choose a folder (--export_dir).")
    record = _read_export_record(output_dir)
    ours: dict[str, str | None] = record["files"] if record else {}
    present = {path.relative_to(output_dir).as_posix() for path in output_dir.rglob("*") if path.is_file()}
    present.discard(EXPORT_RECORD)
    in_the_way = sorted(set(planned) & (present - set(ours)))
    if in_the_way:
        raise ExportFolderError(
            f"export folder {output_dir} holds {_listing(in_the_way)}, which cf_hf did not write and the export "
            "would replace: move it away, or choose another folder (--export_dir)."
        )
    if not overwrite:
        if record is None and present:
            raise ExportFolderError(
                f"export folder {output_dir} is not empty ({_listing(sorted(present))}) and holds no cf_hf export: "
                "choose an empty or new folder (--export_dir), or pass --overwrite (overwrite=True) to write the "
                "dataset beside those files (none of them is deleted)."
            )
        if record is not None and record.get("run_fingerprint") != fingerprint:
            raise ExportFolderError(
                f"export folder {output_dir} holds the export of another run (fingerprint "
                f"{record.get('run_fingerprint')}, this run {fingerprint}): choose another folder (--export_dir), "
                "or pass --overwrite (overwrite=True) to replace that export's files."
            )
        edited = sorted(
            path for path, digest in ours.items()
            if digest is not None and path in present and sha256_of(output_dir / path) != digest
        )  # fmt: skip
        if edited:
            raise ExportFolderError(
                f"export folder {output_dir}: {_listing(edited)} changed since cf_hf exported it: move your "
                "version away, or pass --overwrite (overwrite=True) to replace it."
            )
    return sorted(path for path in ours if path in present)


def _write_export_record(output_dir: Path, fingerprint: str, files: dict[str, str | None]) -> None:
    record = {"format": EXPORT_FORMAT, "version": 1, "run_fingerprint": fingerprint, "cf_hf_version": __version__,
              "files": dict(sorted(files.items()))}  # fmt: skip
    write_atomically(output_dir / EXPORT_RECORD, (json.dumps(record, indent=2) + "\n").encode("utf-8"))


def export_dataset(
    run_dir: str | Path,
    output_dir: str | Path,
    *,
    test_size: float = DEFAULT_TEST_SIZE,
    split_seed: int = 0,
    repo_id: str = DEFAULT_REPO_ID,
    rows_per_shard: int = ROWS_PER_PARQUET_SHARD,
    overwrite: bool = False,
    verifier=None,
) -> Path:
    """Write `output_dir/data/<split>-NNNNN-of-NNNNN.parquet` + `output_dir/README.md` for a
    finished run; returns `output_dir`. Shard checksums are verified before anything is read.

    `output_dir` may be new, empty, or hold an earlier export of this run (whose files are
    replaced). Anything else raises `ExportFolderError` unless `overwrite=True`, which replaces an
    export of another run (or edited exported files) and writes beside files cf_hf did not write.
    Only files an export wrote (listed in `.cf_hf_export.json`) are ever deleted.

    `verifier` (a `cf_hf.generation.verification.Verifier`) scores every counterfactual first: the
    scores become columns, failing rows a `rejected` split, the card gains its pass rates and
    plot. Its scores are kept per chunk in `<run_dir>/verification/`, so an interrupted
    verification resumes.
    """
    from datasets import DatasetInfo

    manifest = finished_manifest(run_dir)
    fingerprint = manifest["fingerprint"]
    output_dir = Path(output_dir)
    with tempfile.TemporaryDirectory(prefix="cf_hf_export_") as cache_dir:
        builder = CounterfactualDataset(
            run_dir=str(Path(run_dir).resolve()),
            test_size=test_size,
            split_seed=split_seed,
            cache_dir=cache_dir,
        )
        builder.download_and_prepare()
        splits = builder.as_dataset()
        summary = None
        if verifier is not None:
            from cf_hf.generation.verification.report import VERIFICATION_PLOT

            splits, summary = verifier(splits, Path(run_dir) / "verification", where=str(run_dir))
        shard_paths = {
            str(split): [
                f"{DATA_DIR}/{split}-{index:05d}-of-{num_shards:05d}.parquet" for index in range(num_shards)
            ]
            for split, dataset in splits.items()
            for num_shards in [max(1, math.ceil(len(dataset) / rows_per_shard))]
        }
        planned = [path for paths in shard_paths.values() for path in paths] + [CARD_NAME]
        if summary is not None:
            planned.append(VERIFICATION_PLOT)
        previous = _previous_export_files(output_dir, fingerprint, planned, overwrite)
        # Recorded before anything changes, so that an interrupted export is still recognised as one.
        _write_export_record(output_dir, fingerprint, dict.fromkeys([*previous, *planned]))
        for path in previous:
            (output_dir / path).unlink(missing_ok=True)
        split_stats = {}
        for split, dataset in splits.items():
            paths = shard_paths[str(split)]
            for index, path in enumerate(paths):
                (output_dir / path).parent.mkdir(parents=True, exist_ok=True)
                dataset.shard(len(paths), index, contiguous=True).to_parquet(str(output_dir / path))
            columns = dataset.select_columns(["group_id", "is_base"])
            split_stats[str(split)] = {
                "rows": len(dataset),
                "groups": len(set(columns["group_id"])),
                "base_images": sum(columns["is_base"]),
            }
        features, split_info = builder.info.features, builder.info.splits
        if summary is not None:  # the verified splits: score columns, and a `rejected` split
            from datasets import SplitDict, SplitInfo

            features = next(iter(splits.values())).features
            split_info = SplitDict()
            for split, dataset in splits.items():
                split_info.add(SplitInfo(name=str(split), num_examples=len(dataset)))
        info = DatasetInfo(
            features=features,
            splits=split_info,
            dataset_size=builder.info.dataset_size,
            download_size=sum((output_dir / path).stat().st_size for paths in shard_paths.values() for path in paths),
        )
        card = render_card(manifest, split_stats, info, repo_id, verification=summary)
        if summary is not None:
            from cf_hf.generation.verification.report import plot_pass_rates

            plot_pass_rates(summary, output_dir / VERIFICATION_PLOT)
        del splits, builder  # release the memory-mapped cache before the folder goes
    (output_dir / CARD_NAME).write_text(card, encoding="utf-8")
    _write_export_record(output_dir, fingerprint, {path: sha256_of(output_dir / path) for path in planned})
    return output_dir
