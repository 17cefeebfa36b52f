"""`cf-hf compare`: fit debiasing methods and score them with any existing checkpoints under one protocol.

    cf-hf compare --original openai/clip-vit-base-patch32 --sweep outputs/sweep \\
        --methods clip_clip biased_prompts --attribute gender \\
        --clip_clip_fairface ~/data/fairface --clip_clip_keep 256 384 448 \\
        --fairface ~/data/fairface --imagenet ~/data/imagenet/val --imagenet_classes classnames.txt \\
        --output_dir outputs/compare

The evaluation sets, the protocol and the embedding options are those of `cf-hf evaluate`. Writes the
fitted checkpoints under OUTPUT_DIR/methods/, and results.json (the `cf-hf evaluate` schema plus a
`methods` section), report.md (the comparison table first) and plots/frontier.png under OUTPUT_DIR.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cf_hf.cli.command import Command
from cf_hf.cli.evaluate import EVALUATE_OUTPUTS, output_settings
from cf_hf.cli.validation import require_all_positive, require_positive
from cf_hf.utils.output_folder import claim_output_folder

FITTED_METHODS = ("clip_clip", "biased_prompts", "closed_form", "bendvlm", "sfid", "spd", "bias_alignment")
# What `cf-hf compare` writes into --output_dir (and `--overwrite` may delete): evaluate's files and the
# fitted methods' checkpoints.
COMPARE_OUTPUTS = (*EVALUATE_OUTPUTS, "methods")


def build_parser() -> argparse.ArgumentParser:
    """`cf-hf evaluate`'s parser with the method options (argparse alone: `--help` is fast)."""
    from cf_hf.cli.evaluate import build_parser as evaluation_parser

    parser = evaluation_parser()
    parser.prog = "cf-hf compare"
    parser.description = (
        "Fit debiasing methods (CLIP-clip, biased prompts, the closed-form projection, BendVLM, SFID, SPD, the "
        "bias-alignment module) on an original CLIP and score them, the original "
        "and any given checkpoints (--model, --sweep: the counterfactual CF_alpha sweep) on the same sets; "
        "writes results.json, report.md with one comparison table, and a fairness-accuracy frontier plot. "
        "List options take space-separated values."
    )
    methods = parser.add_argument_group("methods")
    methods.add_argument("--original", required=True, metavar="PATH",
                         help="the original CLIP (folder or Hub id) the methods are fitted on and compared with")
    methods.add_argument("--methods", nargs="+", default=[], choices=FITTED_METHODS,
                         help="training-free methods to fit, space-separated; unset: none (compare --model/--sweep only)")
    methods.add_argument("--attribute", nargs="+", default=["gender"],
                         help="the protected attribute(s) the fitted methods remove, space-separated; several are "
                              "removed jointly by every method (one fit, not one per attribute)")
    methods.add_argument("--clip_clip_keep", type=int, nargs="+",
                         help="CLIP-clip: numbers of embedding dimensions kept, space-separated (one checkpoint "
                              "each); unset: 50%%, 75%% and 90%% of the embedding size")
    methods.add_argument("--clip_clip_fairface", metavar="DIR",
                         help="CLIP-clip: FairFace folder whose labelled images rank the dimensions (the train split)")
    methods.add_argument("--clip_clip_fairface_csv", metavar="CSV",
                         help="CLIP-clip: labels CSV of --clip_clip_fairface; unset: DIR/fairface_label_train.csv")
    methods.add_argument("--clip_clip_estimator", choices=["histogram", "knn"], default="histogram",
                         help="CLIP-clip: mutual-information estimator; histogram: the authors' (64x64 joint histogram "
                              "smoothed with a Gaussian, sigma 1, on unnormalized image features); knn: scikit-learn's "
                              "k-NN estimator (k=5) on unit-norm embeddings")
    methods.add_argument("--biased_prompts_lambda", type=float, nargs="+",
                         help="biased prompts: calibration strengths λ, space-separated; unset: 1000")
    methods.add_argument("--biased_prompts_file", metavar="YAML",
                         help="biased prompts: the prompts file (spurious prompts, pair templates, calibration "
                              "concepts); unset: the shipped cf_hf/methods/biased_prompts/biased_prompts.yaml. The "
                              "evaluated concepts are dropped from its calibration concepts")
    methods.add_argument("--attribute_prompts_file", metavar="YAML",
                         help="closed form, BendVLM: the attribute prompts file; unset: the shipped "
                              "cf_hf/methods/attribute_prompts.yaml")
    methods.add_argument("--closed_form_weight", type=float, nargs="+",
                         help="closed form: fairness weights in (0, 1], space-separated (one checkpoint each; 1 removes "
                              "the attribute subspace); unset: 1 0.9 0.7")
    methods.add_argument("--bendvlm_neighbors", type=int, nargs="+",
                         help="BendVLM: reference images per attribute value that define its local mean, space-separated "
                              "(one checkpoint each); unset: 100. The reference set is --clip_clip_fairface's labelled images")
    methods.add_argument("--sfid_prune_count", type=int, nargs="+",
                         help="SFID: numbers m of replaced (most attribute-important) coordinates, space-separated (one "
                              "checkpoint each); unset: 50. Fitted on --clip_clip_fairface's labelled images")
    methods.add_argument("--spd_axes", type=int, nargs="+",
                         help="SPD: numbers of attribute axes (iterative nullspace projection) replaced, space-separated "
                              "(one checkpoint each); unset: 4. Fitted on --clip_clip_fairface's labelled images")
    methods.add_argument("--bias_alignment_variants", nargs="+", default=["bias_alignment"],
                         choices=["bias_alignment", "bias_alignment_image_cf", "bias_alignment_ba_only",
                                  "bias_alignment_cd_only"],
                         help="bias alignment: which models to train, space-separated (image_cf: with cf_hf's image "
                              "counterfactuals; ba_only / cd_only: the paper's ablations); trained on --clip_clip_fairface")
    methods.add_argument("--bias_alignment_epochs", type=float, default=100.0,
                         help="bias alignment: training epochs, all run (no held-out ABLE selection here; "
                              "cf-hf train-ba does the authors' best-ABLE selection)")
    methods.add_argument("--bias_alignment_counterfactual_dataset", metavar="DIR",
                         help="bias alignment: cf_hf's counterfactual dataset (for bias_alignment_image_cf)")
    methods.add_argument("--bias_alignment_template", help="bias alignment: caption template with {attribute} "
                         "fields (caption and counterfactual); unset: the authors' caption for --attribute (gender, age, race, or "
                         "the three: cf_hf/methods/bias_alignment/captions.yaml)")
    return parser


def _default_keep(original: str) -> list[int]:
    from transformers import CLIPConfig

    dimension = CLIPConfig.from_pretrained(original).projection_dim
    return sorted({max(1, round(dimension * share)) for share in (0.5, 0.75, 0.9)})


def _concept_names(config) -> list[str]:
    from cf_hf.concepts import load_concepts

    concepts = config.fairness.concepts
    if concepts is None:
        return [concept.name for concept in load_concepts()]
    return [getattr(concept, "name", concept) for concept in concepts]


def _fit_labelled_set_transforms(args, output_dir: Path, config) -> list:
    """SFID (every --sfid_prune_count) and SPD (every --spd_axes) of every --attribute, fitted on the image
    embeddings of --clip_clip_fairface's labelled images: `MethodCheckpoint`s."""
    from cf_hf.evaluation import load_fairface
    from cf_hf.methods import get_method
    from cf_hf.methods.linear import MethodError

    wanted = [name for name in ("sfid", "spd") if name in args.methods]
    if not wanted:
        return []
    if not args.clip_clip_fairface:
        raise MethodError(f"--methods {' '.join(wanted)} needs --clip_clip_fairface DIR: attribute-labelled images to "
                          "fit on (FairFace's train split)")
    csv = args.clip_clip_fairface_csv or Path(args.clip_clip_fairface) / "fairface_label_train.csv"
    gallery = load_fairface(args.clip_clip_fairface, csv, args.fairface_padding, attributes=args.fairface_attributes,
                            skip_missing=args.skip_missing, label_values=args.fairface_labels, name="fairface-train")
    checkpoints = []
    if "sfid" in wanted:
        options = {"prune_counts": args.sfid_prune_count} if args.sfid_prune_count else {}
        checkpoints += get_method("sfid").fit(args.original, output_dir / "methods", gallery, args.attribute,
                                             embedding_config=config.embedding, **options)
    if "spd" in wanted:
        options = {"axes": args.spd_axes} if args.spd_axes else {}
        checkpoints += get_method("spd").fit(args.original, output_dir / "methods", gallery, args.attribute,
                                            embedding_config=config.embedding, **options)
    return checkpoints


class CompareCommand(Command):
    """`cf-hf compare`: fit, evaluate, write the comparison."""

    name = "compare"

    def build_parser(self) -> argparse.ArgumentParser:
        return build_parser()

    def parse(self, argv: list[str]):
        """The options, checked before any fitting or training."""
        from cf_hf.cli.evaluate import check_evaluation_options

        args = super().parse(argv)
        check_evaluation_options(args)
        require_positive("--bias_alignment_epochs", args.bias_alignment_epochs)
        repeated = sorted({name for name in args.attribute if args.attribute.count(name) > 1})
        if repeated:
            raise ValueError(f"--attribute {' '.join(repeated)}: given twice (got {' '.join(args.attribute)})")
        require_all_positive("--clip_clip_keep", args.clip_clip_keep)
        require_all_positive("--biased_prompts_lambda", args.biased_prompts_lambda, allow_zero=True)
        if args.biased_prompts_file is not None and not Path(args.biased_prompts_file).is_file():
            raise ValueError(f"--biased_prompts_file {args.biased_prompts_file}: no such file")
        if set(args.methods) & {"bias_alignment", "clip_clip", "bendvlm", "sfid", "spd"}:
            missing = sorted(set(args.attribute) - set(args.fairface_attributes))
            if missing:
                raise ValueError(f"--attribute {' '.join(missing)}: not among --fairface_attributes "
                                 f"{' '.join(args.fairface_attributes)}")
        return args

    def run(self, args) -> int:
        from cf_hf.methods.registry import register_model_types
        from cf_hf.utils.model_loading import CLIP_MODEL_TYPE_PREFIX, check_model_source

        check_model_source(args.original, args.revision, role="--original", model_type_prefix=CLIP_MODEL_TYPE_PREFIX)
        register_model_types()  # every cf_hf checkpoint loads through AutoModel
        from cf_hf.cli.evaluate import evaluation_config, models_from_args, print_summary, sets_from_args
        from cf_hf.evaluation import load_fairface
        from cf_hf.methods import get_method
        from cf_hf.methods.checkpoints import MethodCheckpoint
        from cf_hf.methods.compare import compare
        from cf_hf.methods.linear import MethodError

        models, alphas = models_from_args(args, self.parser, required=not args.methods)
        fairness, retrieval, zero_shot = sets_from_args(args, self.parser)
        config = evaluation_config(args)
        output_dir = claim_output_folder(args.output_dir, self.name, output_settings(args), owned=COMPARE_OUTPUTS,
                                         overwrite=args.overwrite)
        checkpoints = [
            MethodCheckpoint(name=name, method="counterfactual" if name in alphas else "checkpoint", path=Path(path),
                             settings={"alpha": alphas[name]} if name in alphas else {},
                             swept="alpha" if name in alphas else None)
            for name, path in models.items()
        ]
        if "clip_clip" in args.methods:
            if not args.clip_clip_fairface:
                raise MethodError("--methods clip_clip needs --clip_clip_fairface DIR: labelled images to rank the "
                                  "embedding dimensions by (FairFace's train split)")
            csv = args.clip_clip_fairface_csv or Path(args.clip_clip_fairface) / "fairface_label_train.csv"
            gallery = load_fairface(args.clip_clip_fairface, csv, args.fairface_padding,
                                    attributes=args.fairface_attributes, skip_missing=args.skip_missing,
                                    label_values=args.fairface_labels, name="fairface-train")
            keep = args.clip_clip_keep or _default_keep(args.original)
            checkpoints += get_method("clip_clip").fit(args.original, output_dir / "methods", gallery, args.attribute, keep,
                                                       embedding_config=config.embedding, estimator=args.clip_clip_estimator)
        if "biased_prompts" in args.methods:
            checkpoints += get_method("biased_prompts").fit(args.original, output_dir / "methods", args.attribute,
                                                     _concept_names(config), args.biased_prompts_lambda,
                                                     args.biased_prompts_file, embedding_config=config.embedding)
        if "closed_form" in args.methods:
            checkpoints += get_method("closed_form").fit(args.original, output_dir / "methods", args.attribute,
                                                        args.closed_form_weight, args.attribute_prompts_file,
                                                        embedding_config=config.embedding)
        if "bendvlm" in args.methods:
            if not args.clip_clip_fairface:
                raise MethodError("--methods bendvlm needs --clip_clip_fairface DIR: the attribute-labelled reference "
                                  "images it stores for query time (FairFace's train split)")
            csv = args.clip_clip_fairface_csv or Path(args.clip_clip_fairface) / "fairface_label_train.csv"
            reference = load_fairface(args.clip_clip_fairface, csv, args.fairface_padding,
                                      attributes=args.fairface_attributes, skip_missing=args.skip_missing,
                                      label_values=args.fairface_labels, name="fairface-train")
            checkpoints += get_method("bendvlm").fit(args.original, output_dir / "methods", reference, args.attribute,
                                                    args.bendvlm_neighbors, args.attribute_prompts_file,
                                                    embedding_config=config.embedding)
        checkpoints += _fit_labelled_set_transforms(args, output_dir, config)
        if "bias_alignment" in args.methods:
            from cf_hf.methods.bias_alignment.trainer import BiasAlignmentArguments

            if not args.clip_clip_fairface:
                raise MethodError("--methods bias_alignment needs --clip_clip_fairface DIR: labelled images to train on "
                                  "(FairFace's train split)")
            csv = args.clip_clip_fairface_csv or Path(args.clip_clip_fairface) / "fairface_label_train.csv"
            gallery = load_fairface(args.clip_clip_fairface, csv, args.fairface_padding,
                                    attributes=args.fairface_attributes, skip_missing=args.skip_missing,
                                    label_values=args.fairface_labels, name="fairface-train")
            # No held-out selection here (the compare sets are test sets): fixed epochs, the last heads kept.
            training = BiasAlignmentArguments(output_dir=str(output_dir / "methods"), num_train_epochs=args.bias_alignment_epochs,
                                              use_cpu=args.device == "cpu", disable_tqdm=args.quiet, save_strategy="no",
                                              eval_strategy="no", early_stopping_patience=0)
            checkpoints += get_method("bias_alignment").fit(
                args.original, output_dir / "methods", gallery, args.attribute, training_arguments=training,
                template=args.bias_alignment_template,
                counterfactual_dataset=args.bias_alignment_counterfactual_dataset,
                variants=args.bias_alignment_variants, embedding_config=config.embedding)
        results = compare(args.original, checkpoints, output_dir, fairness, retrieval, zero_shot, config,
                          plots=not args.no_plots)
        print_summary(results)
        print(f"wrote {output_dir / 'results.json'}, {output_dir / 'report.md'}")
        return 0
