"""The From Fake to Real experiment in the professions world (`cf-hf ffr-demo`).

Profession classification with the world's original CLIP as backbone: the real data is the world's
biased scenes with gender as the spurious attribute at a chosen bias level, the synthetic data is
the world's balanced counterfactual dataset (generated with or without the generator signature),
and the schedules real / mixed / ffr with ERM and GroupDRO are compared on a group-balanced real
test set. `data` builds the sets, `experiment` runs and tabulates, `cli` is the command.
"""


def main(argv: list[str] | None = None) -> int:
    """`cf-hf ffr-demo` (imported on call: the command's libraries load only when it runs)."""
    from .cli import main as run

    return run(argv)
