"""Export a finished run as a Hub-ready dataset folder: parquet shards under `data/` + `README.md`
(the dataset card, with YAML `configs:`), so that `datasets.load_dataset(folder)` — and, once
pushed, `datasets.load_dataset("org/they-are-all-doctors")` — works with no code.
"""

from __future__ import annotations

import math
import shutil
import string
import tempfile
from pathlib import Path

import yaml

from dataset_builder.builder import CITATION, DEFAULT_TEST_SIZE, CounterfactualDataset, finished_manifest

DEFAULT_REPO_ID = "org/they-are-all-doctors"
CARD_TEMPLATE = Path(__file__).resolve().parent / "card_template.md"
ROWS_PER_PARQUET_SHARD = 2000
DATA_DIR = "data"


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


def render_card(manifest: dict, split_stats: dict[str, dict[str, int]], info, repo_id: str) -> str:
    """The dataset card (README.md) for an exported run.

    `info` is the `datasets.DatasetInfo` written as the card's `dataset_info` (features, splits and
    sizes), or just the `datasets.Features`.
    """
    from datasets import DatasetInfo

    if not isinstance(info, DatasetInfo):
        info = DatasetInfo(features=info)
    config = manifest["config"]
    grid = config["attribute_grid"]["attributes"]
    rows = sum(stats["rows"] for stats in split_stats.values())
    header = {
        "pretty_name": "They're All Doctors — counterfactual images",
        "license": "other",
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
    components = manifest["components"]
    mask = config["mask_postprocessing"]
    rejected = manifest.get("totals", {}).get("rejected") or {}
    values = {
        "yaml_header": yaml.safe_dump(header, sort_keys=False, allow_unicode=True).strip(),
        "pretty_name": header["pretty_name"],
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
    }
    return string.Template(CARD_TEMPLATE.read_text(encoding="utf-8")).substitute(values)


def export_dataset(
    run_dir: str | Path,
    output_dir: str | Path,
    *,
    test_size: float = DEFAULT_TEST_SIZE,
    split_seed: int = 0,
    repo_id: str = DEFAULT_REPO_ID,
    rows_per_shard: int = ROWS_PER_PARQUET_SHARD,
    overwrite: bool = False,
) -> Path:
    """Write `output_dir/data/<split>-NNNNN-of-NNNNN.parquet` + `output_dir/README.md` for a
    finished run; returns `output_dir`. Shard checksums are verified before anything is read."""
    from datasets import DatasetInfo

    manifest = finished_manifest(run_dir)
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{output_dir} is not empty; pass overwrite=True to replace its dataset.")
        shutil.rmtree(output_dir / DATA_DIR, ignore_errors=True)
        (output_dir / "README.md").unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="cf_hf_export_") as cache_dir:
        builder = CounterfactualDataset(
            run_dir=str(Path(run_dir).resolve()),
            test_size=test_size,
            split_seed=split_seed,
            cache_dir=cache_dir,
        )
        builder.download_and_prepare()
        splits = builder.as_dataset()
        split_stats = {}
        for split, dataset in splits.items():
            num_shards = max(1, math.ceil(len(dataset) / rows_per_shard))
            for index in range(num_shards):
                path = output_dir / DATA_DIR / f"{split}-{index:05d}-of-{num_shards:05d}.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                dataset.shard(num_shards, index, contiguous=True).to_parquet(str(path))
            columns = dataset.select_columns(["group_id", "is_base"])
            split_stats[str(split)] = {
                "rows": len(dataset),
                "groups": len(set(columns["group_id"])),
                "base_images": sum(columns["is_base"]),
            }
        info = DatasetInfo(
            features=builder.info.features,
            splits=builder.info.splits,
            dataset_size=builder.info.dataset_size,
            download_size=sum(path.stat().st_size for path in (output_dir / DATA_DIR).glob("*.parquet")),
        )
        card = render_card(manifest, split_stats, info, repo_id)
        del splits, builder  # release the memory-mapped cache before the folder goes
    (output_dir / "README.md").write_text(card, encoding="utf-8")
    return output_dir
