"""`cf-hf demo`: the command line (argparse alone: `--help` prints without importing torch)."""

from __future__ import annotations

import argparse
import shlex
from dataclasses import replace
from pathlib import Path

from cf_hf.cli.command import Command
from cf_hf.world import corpus as corpus_module
from cf_hf.world.corpus import ATTRIBUTES
from cf_hf.world.demo.config import BIAS_ALIGNMENT_VARIANTS, DemoConfig


def build_parser() -> argparse.ArgumentParser:
    """The `cf-hf demo` parser."""
    parser = argparse.ArgumentParser(
        prog="cf-hf demo",
        description="Run the whole method on the embedded professions world and report the measured numbers. "
        "Options left unset take the preset's value (the full demo, or --quick). Both load the shipped "
        "original CLIP when their settings match, and pretrain one otherwise.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--output_dir", default="outputs/demo", help="where every artefact is written")
    parser.add_argument("--quick", action="store_true",
                        help="a small smoke run from the shipped original (the tests' mode)")  # fmt: skip
    parser.add_argument("--seeds", type=int, default=None,
                        help="fine-tuning seeds to average; unset: 1 (README's tables: --seeds 3 --ablations)")  # fmt: skip
    parser.add_argument("--ablations", action="store_true",
                        help="also fine-tune and evaluate the three ablations per seed (β_cf = 0, unbalanced "
                             "counterfactuals, a sample of the biased corpus)")  # fmt: skip
    parser.add_argument("--alphas", type=float, nargs="+", default=None,
                        help="the α's of the WiSE-FT sweep, space-separated; unset: the preset's")  # fmt: skip
    parser.add_argument("--finetune_steps", type=int, default=None,
                        help="fine-tuning steps per seed; unset: the preset's")  # fmt: skip
    parser.add_argument("--pretrain_steps", type=int, default=None,
                        help="pretraining steps of the original CLIP; unset: the preset's")  # fmt: skip
    parser.add_argument("--corpus_size", type=int, default=None,
                        help="image-caption pairs of the biased web corpus; unset: the preset's")  # fmt: skip
    parser.add_argument("--stereotype_probability", type=float, default=None,
                        help="the corpus's stereotype probability for every attribute; unset: "
                             f"{corpus_module.DEFAULT_STEREOTYPE_PROBABILITY}")  # fmt: skip
    parser.add_argument("--unnamed_world", action="store_true",
                        help="the world before captions named people (every naming probability 0): the ablation "
                             "of the text tower's appearance words; pretrains its own original")
    parser.add_argument("--no_methods", action="store_true",
                        help="do not compare CLIP-clip and biased prompts (cf_hf.methods) with CF_α")
    parser.add_argument("--bias_alignment", action="store_true",
                        help="also train the bias-alignment module per seed (the variants of "
                             "--bias_alignment_variants) and compare it with the other methods")
    parser.add_argument("--bias_alignment_variants", nargs="+", default=None, choices=list(BIAS_ALIGNMENT_VARIANTS),
                        help="with --bias_alignment: which variants to train; unset: the paper's model "
                             "(bias_alignment); all four rows: bias_alignment bias_alignment_image_cf "
                             "bias_alignment_ba_only bias_alignment_cd_only")  # fmt: skip
    parser.add_argument("--pretrain_original", action="store_true",
                        help="pretrain the original CLIP in this run even when the shipped one matches its settings")  # fmt: skip
    parser.add_argument("--pretrain", action="store_true",
                        help="only pretrain the original CLIP with the corpus and pretraining settings given and write "
                             "it, with its record, as the shipped original (to --original_dir); then exit")  # fmt: skip
    parser.add_argument("--original_dir", default=None,
                        help="the shipped original's folder: --pretrain writes it, a run loads it when its corpus and "
                             "pretraining settings match; unset: cf_hf/world/original_clip in the package")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads; unset: $OMP_NUM_THREADS, else 2, the count the documented numbers "
                             "were computed with (another count computes other numbers: docs/reproducibility.md)")  # fmt: skip
    parser.add_argument("--quiet", "--no_progress", dest="quiet", action="store_true", help="print only the final table")
    parser.add_argument("--verbose", action="store_true",
                        help="also show every inner progress bar (embedding, generation, dataset export) and the "
                             "libraries' load reports; unset: one line per stage and the fine-tuning's bar")
    return parser


def config_from_args(args: argparse.Namespace) -> DemoConfig:
    """The preset (`--quick` or the full demo) with the options given on top."""
    config = DemoConfig.quick() if args.quick else DemoConfig.full()
    if args.seeds is not None:
        if args.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
        config.seeds = args.seeds
    if args.alphas is not None:
        config.alphas = tuple(args.alphas)
    if args.ablations:
        config.ablations = True
    if args.pretrain_original:
        config.pretrain_original = True
    if args.no_methods:
        config.compare_methods = False
    if args.bias_alignment_variants is not None and not args.bias_alignment:
        raise ValueError("--bias_alignment_variants needs --bias_alignment (it names what that trains)")
    if args.bias_alignment:
        config.bias_alignment = True
    if args.bias_alignment_variants is not None:
        if len(set(args.bias_alignment_variants)) < len(args.bias_alignment_variants):
            raise ValueError(f"--bias_alignment_variants names a variant twice: {args.bias_alignment_variants}")
        config.bias_alignment_variants = tuple(args.bias_alignment_variants)
    if args.finetune_steps is not None:
        config.finetune_steps = args.finetune_steps
    if args.pretrain_steps is not None:
        config.pretrain.steps = args.pretrain_steps
    if args.corpus_size is not None:
        config.corpus.size = args.corpus_size
    if args.stereotype_probability is not None:
        config.corpus = replace(
            config.corpus, stereotype_probability=dict.fromkeys(ATTRIBUTES, args.stereotype_probability)
        )
    if args.unnamed_world:
        kept = {name: getattr(config.corpus, name) for name in vars(config.corpus)
                if name not in corpus_module.NAMING_FIELDS}
        config.corpus = corpus_module.CorpusConfig.unnamed(**kept)
    return config


def write_original(config: DemoConfig, path: str | Path | None = None, quiet: bool = False) -> Path:
    """`cf-hf demo --pretrain`: pretrain the original with `config`'s corpus and pretraining settings
    and write it as the shipped original to `path` (unset: the package's)."""
    from cf_hf.world.original import ORIGINAL_DIR, write_shipped_original

    return write_shipped_original(config.corpus, config.pretrain, path=path or ORIGINAL_DIR,
                                  log=None if quiet else print)  # fmt: skip


class DemoCommand(Command):
    """`cf-hf demo`: run, then print the headline table and where the artefacts are (or, with
    `--pretrain`, write the shipped original)."""

    name = "demo"

    def build_parser(self) -> argparse.ArgumentParser:
        return build_parser()

    def run(self, args) -> int:
        try:
            config = config_from_args(args)
        except ValueError as error:
            self.parser.error(str(error))
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        if args.pretrain:
            path = write_original(config, args.original_dir, args.quiet)
            print(f"shipped original written to {path}")
            return 0
        from cf_hf.utils.output_folder import claim_output_folder
        from cf_hf.world.demo.report import (
            comparison_header,
            comparison_rows,
            markdown_table,
            summary_header,
            summary_rows,
        )
        from cf_hf.world.demo.run import DEMO_OUTPUTS, RESULTS_FILE, run_demo

        # A demo recomputes everything it writes (nothing is reused), so a rerun replaces its own files.
        claim_output_folder(args.output_dir, self.name, owned=DEMO_OUTPUTS, earlier_record=RESULTS_FILE)
        results = run_demo(config, args.output_dir, quiet=args.quiet, shipped_dir=args.original_dir,
                           verbose=args.verbose)
        print()
        # One table: the comparison when methods were compared (it holds the original and CF_α too).
        if results.get("method_selection"):
            print(markdown_table(comparison_header(), comparison_rows(results)))
        else:
            print(markdown_table(summary_header(), summary_rows(results)))
        print()
        print(f"chosen α = {results['chosen_alpha']:g}; wall time {results['wall_time_seconds']:.0f} s; "
              f"peak memory {results['peak_memory_mb']:.0f} MB; original CLIP "
              f"{results['config']['original']['source']}")  # fmt: skip
        print(
            f"report: {Path(args.output_dir) / 'report.md'}   results: {Path(args.output_dir) / 'results.json'}"
        )
        print("\nThe same comparison from files (the test galleries as FairFace / ImageNet / Flickr files), as a user "
              "would run it:")
        print("  " + shlex.join(results["compare_command"]))
        from cf_hf.world.demo.explorer import explorer_command

        print(f"explorer (needs cf_hf[explorer]): {explorer_command(config, args.output_dir, results['chosen_alpha'], results.get('method_selection'))}")
        return 0
