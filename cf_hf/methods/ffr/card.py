"""The model card of a trained classifier: YAML metadata and the schedule it was trained with."""

from __future__ import annotations

from pathlib import Path

import yaml

CARD_NAME = "README.md"
SCHEDULE_TEXT = {
    "real": "trained on the real data only",
    "usb": "trained on the real data plus synthetic images filling each group up to the largest (uneven "
           "synthetic balancing, USB), in one stage",
    "asb": "trained on the real data plus equally many synthetic images per group (USB's total; ASB), in one stage",
    "ffr": "From Fake to Real: trained on the balanced synthetic data first, then on the real data",
    "ffr-stage-1": "stage 1 of From Fake to Real: trained on the balanced synthetic data only",
}


# Kept in step with docs/method.md §6, which gives each reason.
AUTHOR_DIFFERENCES = (
    "backbone: CLIP's image tower instead of an ImageNet ResNet-50;",
    "optimiser: Trainer's AdamW (decoupled weight decay) instead of Adam with L2 weight decay;",
    "no learning-rate search; the world experiment trains 10 epochs per stage instead of 50;",
    "a group's synthetic images are its first rows in the dataset, not the first files a folder lists;",
    "groups are numbered by sorted id rather than by first appearance (same partition);",
    "a validation set or GroupDRO training set missing a (class, attribute) group is refused;",
    "GroupDRO's generalisation adjustment, loss normalisation and BTL (off in the authors' runs) are absent;",
    "without a validation set each stage keeps its last epoch (the authors always select on validation).",
)


def model_card(record: dict, metrics: dict[str, float] | None = None) -> str:
    """The card's text for a training record (`training.RECORD_KEY` of the config) and optional
    evaluation metrics (fractions)."""
    metadata = {
        "library_name": "transformers",
        "pipeline_tag": "image-classification",
        "tags": ["cf_hf", "clip", "image-classification", f"schedule-{record['schedule']}", f"loss-{record['loss']}"],
    }
    base_model = record.get("base_model")
    if base_model and not Path(base_model).exists():  # a Hub id, not a local folder
        metadata["base_model"] = base_model
    if metrics:
        metadata["model-index"] = [{
            "name": f"clip-classifier-{record['schedule']}-{record['loss']}",
            "results": [{
                "task": {"type": "image-classification"},
                "metrics": [{"type": name, "value": round(float(value), 4)} for name, value in metrics.items()],
            }],
        }]  # fmt: skip
    lines = [
        "---", yaml.safe_dump(metadata, sort_keys=False).strip(), "---", "",
        f"# CLIP image classifier ({record['schedule']}, {record['loss']})", "",
        f"A `CLIPForImageClassification` {SCHEDULE_TEXT.get(record['schedule'], record['schedule'])}, with cf_hf. "
        f"Classes (`{record['label_column']}`): {', '.join(record['labels'])}. Groups for GroupDRO and the "
        f"worst-group metrics: (class, `{record['group_column']}`), with values {', '.join(record['group_values'])}"
        + ("; GroupDRO and resampling also split real from generated images." if record["schedule"] in ("usb", "asb")
           else "."),
        "", "It loads with plain transformers: `CLIPForImageClassification.from_pretrained(folder)`.", "",
        "## Training stages", "",
        "| stage | data | examples | groups | loss | epochs | kept | learning rate | batch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for stage in record["stages"]:
        lines.append(
            f"| {stage['name']} | {stage['data']} | {stage['examples']} | {len(stage['groups'])} | {stage['loss']} | "
            f"{stage['num_train_epochs']:g} | {_kept(stage.get('selection') or {})} | {stage['learning_rate']} | "
            f"{stage['per_device_train_batch_size']} |"
        )
    synthetic = next((stage["synthetic_per_group"] for stage in record["stages"] if "synthetic_per_group" in stage),
                     None)
    if synthetic:
        lines += ["", "Synthetic images per group: " + ", ".join(f"{name} {count}" for name, count in synthetic)
                  + "."]
    lines += ["", "## Differences from the authors' code", "",
              "Deliberate, with their reasons in cf_hf's docs/method.md, §6 (From Fake to Real; authors' code "
              "`mqraitem/From-Fake-to-Real`):", ""]
    lines += [f"- {difference}" for difference in AUTHOR_DIFFERENCES]
    if metrics:
        lines += ["", "## Evaluation", "", "| metric | value |", "|---|---|"]
        lines += [f"| {name} | {value:.4f} |" for name, value in metrics.items()]
    return "\n".join(lines) + "\n"


def _kept(selection: dict) -> str:
    if "epoch" in selection:
        return f"epoch {selection['epoch']} (validation worst-group {selection['validation_worst_group_accuracy']:.3f})"
    return "last epoch"


def write_model_card(folder: str | Path, record: dict, metrics: dict[str, float] | None = None) -> Path:
    """Write `README.md` (the card) into the checkpoint folder."""
    path = Path(folder) / CARD_NAME
    path.write_text(model_card(record, metrics), encoding="utf-8")
    return path
