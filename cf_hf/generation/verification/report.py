"""What verification reports: the score columns attached, failing rows moved to a `rejected` split,
the pass rates summarised (`VerificationSummary`), plotted, and written as the dataset card's
"Verification" section.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from cf_hf.generation.verification.scores import (
    FAILURES_COLUMN,
    PASSED_COLUMN,
    VerificationConfig,
    column_as_strings,
    grid_attribute,
    score_features,
    verdict,
)

REJECTED_SPLIT = "rejected"


@dataclass
class VerificationSummary:
    """What the card's "Verification" section reports: pass rates per requested attribute value and
    per concept, rejections per check, groups left with < 2 rows, checks skipped, thresholds."""

    counterfactuals: int
    passed: int
    by_value: dict[str, dict[str, list[int]]]  # attribute -> value -> [passed, total]
    by_concept: dict[str, list[int]]
    failures: dict[str, int]
    small_groups: list[str]
    skipped: list[str]
    thresholds: dict

    def pass_rate(self, attribute: str, value: str) -> float:
        passed, total = self.by_value[attribute][value]
        return passed / total if total else float("nan")

    def to_dict(self) -> dict:
        return asdict(self)


def apply_verification(splits: Mapping, scores: Mapping[str, list], grid, config: VerificationConfig,
                       skipped: set[str] = frozenset()):  # fmt: skip
    """Add the score columns to every split (null on base rows and on skipped checks), move failing
    rows to a `rejected` split, and summarise. Returns (DatasetDict, VerificationSummary)."""
    import datasets

    attributes = [name for name in grid.names if name in next(iter(splits.values())).column_names]
    grid_values = {name: list(grid_attribute(grid, name).values) for name in attributes}
    features = score_features(attributes)
    kept, rejected = {}, []
    by_value: dict = {name: defaultdict(lambda: [0, 0]) for name in attributes}
    by_concept: dict = defaultdict(lambda: [0, 0])
    failure_counts: Counter = Counter()
    small_groups = []
    for split, dataset in splits.items():
        rows = scores[split]
        columns = {name: [] for name in features}
        passed_rows = []
        for row in rows:
            if row is None:  # a base image: nothing to verify
                for name in features:
                    columns[name].append(True if name == PASSED_COLUMN else None)
                passed_rows.append(True)
                continue
            failures = verdict(row, attributes, config)
            failure_counts.update(failures)
            for name in features:
                columns[name].append(row.get(name))
            columns[PASSED_COLUMN][-1] = not failures
            columns[FAILURES_COLUMN][-1] = ",".join(failures)
            passed_rows.append(not failures)
        for name, feature in features.items():
            dataset = dataset.add_column(name, columns[name], feature=feature)
        group_ids = dataset["group_id"] if "group_id" in dataset.column_names else None
        concepts = column_as_strings(dataset, "concept") if "concept" in dataset.column_names else ["all"] * len(dataset)
        values = {name: column_as_strings(dataset, name) for name in attributes}
        members = Counter()
        for index, (row, ok) in enumerate(zip(rows, passed_rows)):
            if group_ids is not None and ok:
                members[group_ids[index]] += 1
            if row is None:
                continue
            by_concept[concepts[index]][1] += 1
            by_concept[concepts[index]][0] += ok
            for name in attributes:
                by_value[name][values[name][index]][1] += 1
                by_value[name][values[name][index]][0] += ok
        if group_ids is not None:
            small_groups += sorted(group for group in dict.fromkeys(group_ids) if members[group] < 2)
        keep = [i for i, ok in enumerate(passed_rows) if ok]
        drop = [i for i, ok in enumerate(passed_rows) if not ok]
        kept[split] = dataset.select(keep)
        if drop:
            rejected.append(dataset.select(drop))
    if rejected:
        kept[REJECTED_SPLIT] = datasets.concatenate_datasets(rejected)
    counterfactuals = sum(total for _, total in by_concept.values())
    summary = VerificationSummary(
        counterfactuals=counterfactuals,
        passed=sum(passed for passed, _ in by_concept.values()),
        by_value={name: {value: list(by_value[name][value]) for value in grid_values[name] if value in by_value[name]}
                  for name in attributes},
        by_concept={name: list(pair) for name, pair in sorted(by_concept.items())},
        failures=dict(failure_counts.most_common()),
        small_groups=small_groups,
        skipped=sorted(skipped),
        thresholds={key: value for key, value in asdict(config).items() if key.startswith(("max_", "min_"))},
    )
    return datasets.DatasetDict(kept), summary


VERIFICATION_PLOT = "verification.png"


def plot_pass_rates(summary: VerificationSummary, path: str | Path) -> Path:
    """A bar chart of the pass rate per requested attribute value (one panel per attribute)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attributes = list(summary.by_value)
    figure, axes = plt.subplots(1, len(attributes), figsize=(3.2 * len(attributes), 2.8), squeeze=False)
    for axis, name in zip(axes[0], attributes):
        values = list(summary.by_value[name])
        rates = [100 * summary.pass_rate(name, value) for value in values]
        axis.bar(range(len(values)), rates, color="#4c72b0")
        axis.set_xticks(range(len(values)), [value.replace("_", " ") for value in values], rotation=30, ha="right", fontsize=8)
        axis.set_ylim(0, 100)
        axis.set_title(name, fontsize=9)
        axis.set_ylabel("passed (%)", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)


def _percent(passed: int, total: int) -> str:
    return f"{100 * passed / total:.1f}% ({passed}/{total})" if total else "—"


def render_verification_section(summary: VerificationSummary | None, plot: str | None = VERIFICATION_PLOT) -> str:
    """The card's "Verification" section (markdown): the generator's measured pass rates."""
    if summary is None:
        return ("Not verified: every generated row is included unchecked. `cf-hf verify` scores each "
                "counterfactual and moves the failures to a `rejected` split.")  # fmt: skip
    lines = [
        f"Every counterfactual was scored (`verify_*` columns): {_percent(summary.passed, summary.counterfactuals)} "
        f"passed; the others are in the `{REJECTED_SPLIT}` split, with `verify_failures` naming the checks they failed.",
        "The pass rate per requested value is the generator's own bias, measured: how often each requested "
        "appearance actually came out.",
        "",
        "| attribute | requested value | passed |",
        "|---|---|---:|",
    ]
    for name, values in summary.by_value.items():
        lines += [f"| {name} | {value} | {_percent(*pair)} |" for value, pair in values.items()]
    lines += ["", "| concept | passed |", "|---|---:|"]
    lines += [f"| {name} | {_percent(*pair)} |" for name, pair in summary.by_concept.items()]
    lines += ["", "Failures by check: " + (", ".join(f"{name}: {count}" for name, count in summary.failures.items()) or "none") + "."]
    lines.append("Checks skipped (inputs missing): " + (", ".join(summary.skipped) or "none") + ".")
    lines.append(f"Groups left with fewer than 2 rows: {len(summary.small_groups)}"
                 + (f" ({', '.join(summary.small_groups[:10])}{' …' if len(summary.small_groups) > 10 else ''})." if summary.small_groups else "."))  # fmt: skip
    lines.append("Thresholds: " + ", ".join(f"{key} {value}" for key, value in summary.thresholds.items()) + ".")
    if plot:
        lines += ["", f"![pass rate per requested value]({plot})"]
    return "\n".join(lines)
