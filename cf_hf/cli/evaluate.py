"""`cf-hf evaluate`: fairness and downstream evaluation of one or more CLIP checkpoints.

    cf-hf evaluate --model openai/clip-vit-base-patch32 --model ./cf-clip \\
        --fairface ~/data/fairface --flickr ~/data/dataset_flickr30k.json --flickr_images ~/data/flickr30k \\
        --imagenet ~/data/imagenet/val --imagenet_classes classnames.txt --output_dir outputs/eval

    cf-hf evaluate --sweep outputs/interpolate --model original=openai/clip-vit-base-patch32 \\
        --fairface ~/data/fairface --output_dir outputs/sweep-eval

Writes results.json, report.md and plots/ under --output_dir (see `cf_hf.evaluation.report`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cf_hf.cli.command import Command, add_quiet_option
from cf_hf.cli.validation import require_all_positive, require_positive
from cf_hf.utils.output_folder import claim_output_folder


def add_gallery_options(group) -> None:
    """The options of the attribute-labelled galleries the harness loads (FairFace, UTKFace, PATA, any
    `datasets` dataset), shared by `cf-hf evaluate`, `cf-hf compare` and `cf-hf explore`."""
    group.add_argument("--galleries", metavar="DIR",
                       help="a folder of galleries with its manifest galleries.yaml (cf-hf demo writes one under "
                            "OUTPUT_DIR/galleries): its options, paths relative to DIR; options given here override it")
    group.add_argument("--fairface", metavar="DIR", help="FairFace image folder (with train/ and val/, or a padding variant folder)")
    group.add_argument("--fairface_csv", metavar="CSV", help="FairFace labels CSV; unset: DIR/fairface_label_val.csv")
    group.add_argument("--fairface_padding", choices=["0.25", "1.25"], help="which FairFace crop when both are present")
    group.add_argument("--fairface_labels", metavar="FILE",
                       help="YAML/JSON 'attribute: [values]' naming the label values of a CSV that does not use "
                            "FairFace's own (any other value is an error)")
    group.add_argument("--fairface_attributes", nargs="+", default=["gender", "race", "age"], metavar="COLUMN",
                       help="label columns of the FairFace CSV that are sensitive attributes, space-separated")
    group.add_argument("--utkface", metavar="DIR", help="folder of UTKFace age_gender_race_date.jpg files")
    group.add_argument("--pata", metavar="FILE", help="PATA list of scene_race_gender_age|path lines")
    group.add_argument("--pata_captions", metavar="JSON", help="PATA captions JSON (queries per scene)")
    group.add_argument("--pata_images", metavar="DIR", help="folder the PATA paths are relative to")
    group.add_argument("--hf_gallery", metavar="NAME_OR_DIR", help="any `datasets` dataset as a fairness gallery")
    group.add_argument("--hf_split", help="split of --hf_gallery")
    group.add_argument("--image_column", default="image", help="image column of --hf_gallery")
    group.add_argument("--attribute_columns", nargs="+", default=[],
                       help="sensitive-attribute columns of --hf_gallery, space-separated")


def build_parser() -> argparse.ArgumentParser:
    """The `cf-hf evaluate` parser (argparse alone: `--help` imports nothing heavy)."""
    parser = argparse.ArgumentParser(
        prog="cf-hf evaluate",
        description="Fairness (MaxSkew/MinSkew/NDKL, worst-group recall) and downstream (Recall@K, zero-shot) "
                    "evaluation of CLIP checkpoints; writes results.json, report.md and plots. List options take "
                    "space-separated values.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    models = parser.add_argument_group("models")
    models.add_argument("--model", action="extend", nargs="+", default=[], metavar="[NAME=]PATH",
                        help="CLIP checkpoint folders or Hub ids, space-separated (the option may be repeated); "
                             "without NAME= a model is named after its folder")
    models.add_argument("--sweep", metavar="DIR", help="an α-sweep folder written by `cf-hf interpolate`; "
                        "its checkpoints are named alpha=<α>")
    models.add_argument("--revision", help="Hub revision for --model ids")

    data = parser.add_argument_group("evaluation sets (at least one)")
    add_gallery_options(data)
    data.add_argument("--concept_column", help="concept column of --hf_gallery (enables worst-group recall)")
    data.add_argument("--flickr", metavar="JSON", help="Flickr30k Karpathy-split JSON (dataset_flickr30k.json)")
    data.add_argument("--flickr_images", metavar="DIR", help="Flickr30k image folder; unset: the JSON's folder")
    data.add_argument("--coco", metavar="JSON", help="COCO Karpathy-split JSON (dataset_coco.json)")
    data.add_argument("--coco_images", metavar="DIR", help="COCO image folder holding val2014/; unset: the JSON's folder")
    data.add_argument("--retrieval_split", default="test", help="Karpathy split to evaluate")
    data.add_argument("--imagenet", metavar="DIR", help="ImageNet-style folder per class")
    data.add_argument("--imagenet_classes", metavar="FILE", help="class names (text, one per sorted folder, or JSON)")
    data.add_argument("--imagenet_templates", metavar="FILE", help="zero-shot templates, one per line with {}")
    data.add_argument("--skip_missing", action="store_true",
                      help="skip (and count) rows whose image is missing and UTKFace files with malformed names")

    protocol = parser.add_argument_group("protocol")
    protocol.add_argument("--templates", metavar="FILE", help="fairness prompt templates, one per line ({concept}, {article}); unset: the shipped ones")
    protocol.add_argument("--concepts", nargs="+", metavar="CONCEPT",
                          help="fairness concepts, space-separated (or one file: a concepts YAML/JSON, whose `templates:` "
                               "are used unless --templates is given, or text with one per line); unset: the shipped "
                               "professions. Shipped sets: cf_hf/concepts/{adjectives,activities,stereotype_terms}.yaml")
    protocol.add_argument("--k", type=int, nargs="+", dest="ks",
                          help="fairness cut-offs, space-separated; unset: 1000. The first is the main k and must be "
                               "below every gallery's size; a later k that is not is left out for that gallery, with a warning")
    protocol.add_argument("--desired", nargs="+", choices=["equal_opportunity", "demographic_parity"],
                          help="desired distributions, space-separated (the first is the headline); unset: both")
    protocol.add_argument("--convention", choices=["berg", "exact"], default="berg",
                          help="berg: a value absent from the top-k counts as 1/k and MaxSkew >= 0 (published numbers); "
                               "exact: the plain definitions")
    protocol.add_argument("--attributes", nargs="+", help="evaluate only these sensitive attributes, space-separated; unset: all")
    protocol.add_argument("--random_floor_queries", type=int, default=16,
                          help="random rankings scored for the fairness floor (0: off)")

    engine = parser.add_argument_group("embedding")
    engine.add_argument("--device", default="cpu", help="torch device the models run on (cpu, cuda, cuda:1, mps)")
    engine.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                        help="dtype the models run in")
    engine.add_argument("--batch_size", type=int, default=64, help="images or texts per forward pass")
    engine.add_argument("--storage_dtype", default="float32", choices=["float32", "float16"],
                        help="dtype of the stored gallery embeddings")
    engine.add_argument("--cache_dir", help="embedding cache; unset: OUTPUT_DIR/embeddings; 'none' disables it")
    engine.add_argument("--num_workers", type=int, default=0, help="threads decoding the next image batch (0: none)")
    add_quiet_option(engine)

    parser.add_argument("--output_dir", required=True, help="where results.json, report.md and plots/ are written")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier run in --output_dir that used other settings (only what "
                             "it wrote is deleted)")
    parser.add_argument("--no_plots", action="store_true", help="write no plots")
    return parser


# What `cf-hf evaluate` writes into --output_dir (and `--overwrite` may delete).
EVALUATE_OUTPUTS = ("results.json", "report.md", "plots", "embeddings")
# Options that change how fast, not what, a command computes: not part of an output folder's settings.
SPEED_OPTIONS = {"quiet", "device", "batch_size", "num_workers", "overwrite", "output_dir", "cache_dir"}


def check_evaluation_options(args) -> None:
    """The protocol and embedding options, checked at parse time (shared with `cf-hf compare`)."""
    require_all_positive("--k", args.ks)
    require_positive("--random_floor_queries", args.random_floor_queries, allow_zero=True)
    require_positive("--batch_size", args.batch_size)
    require_positive("--num_workers", args.num_workers, allow_zero=True)
    for option in ("templates", "imagenet_classes", "imagenet_templates", "flickr", "coco", "pata", "pata_captions",
                   "fairface_csv", "fairface_labels"):
        value = getattr(args, option, None)
        if value is not None and not Path(value).is_file():
            raise ValueError(f"--{option} {value}: no such file")


def output_settings(args) -> dict:
    """The options that change what a run writes (for `claim_output_folder`)."""
    return {name: value for name, value in sorted(vars(args).items()) if name not in SPEED_OPTIONS}


def models_from_args(args, parser, required: bool = True) -> tuple[dict, dict]:
    """name -> checkpoint of --model and --sweep, and name -> α of the sweep's members."""
    from cf_hf.interpolation import load_sweep

    models, alphas = {}, {}
    for spec in args.model:
        name, separator, path = spec.partition("=")
        if not separator:
            name, path = Path(spec.rstrip("/")).name or spec, spec
        if name in models:
            parser.error(f"two models are named {name!r}: use --model NAME=PATH")
        models[name] = path
    if args.sweep:
        swept, alphas = load_sweep(args.sweep)
        clash = sorted(set(swept) & set(models))
        if clash:
            parser.error(f"model names {clash} clash with the sweep's")
        models.update(swept)
    if not models and required:
        parser.error("give at least one --model or --sweep")
    return models, alphas


def concepts_and_templates(values) -> tuple[list | None, list[str] | None]:
    """The fairness concepts `--concepts` names, and the prompt templates of its concepts file when that
    file names some (`templates:`); a text file holds one concept per line."""
    if values is None:
        return None, None
    if len(values) == 1 and Path(values[0]).is_file():
        path = Path(values[0])
        if path.suffix.lower() in {".yaml", ".yml", ".json"}:
            from cf_hf.concepts import load_concept_set

            concept_set = load_concept_set(path)
            return list(concept_set.concepts), list(concept_set.templates) if concept_set.templates else None
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()], None
    return values, None


def sets_from_args(args, parser):
    """The fairness, retrieval and zero-shot sets the data options name (at least one)."""
    from cf_hf.evaluation import galleries

    fairness, retrieval, zero_shot = [], [], []
    if args.fairface:
        fairness.append(galleries.load_fairface(args.fairface, args.fairface_csv, args.fairface_padding,
                                                attributes=args.fairface_attributes, skip_missing=args.skip_missing,
                                                label_values=args.fairface_labels))
    if args.utkface:
        fairness.append(galleries.load_utkface(args.utkface, skip_malformed=args.skip_missing))
    if args.pata:
        fairness.append(galleries.load_pata(args.pata, args.pata_captions, args.pata_images, skip_missing=args.skip_missing))
    if args.hf_gallery:
        fairness.append(galleries.load_hf_gallery(args.hf_gallery, args.attribute_columns, args.image_column,
                                                  args.concept_column, args.hf_split))
    for option, images, name in ((args.flickr, args.flickr_images, "flickr30k"), (args.coco, args.coco_images, "coco")):
        if option:
            retrieval.append(galleries.load_karpathy(option, images or Path(option).parent, args.retrieval_split, name=name))
    if args.imagenet:
        zero_shot.append(galleries.load_imagenet_folder(args.imagenet, args.imagenet_classes, args.imagenet_templates))
    if not (fairness or retrieval or zero_shot):
        parser.error("give at least one evaluation set (--fairface, --utkface, --pata, --hf_gallery, --flickr, "
                     "--coco, --imagenet)")
    return fairness, retrieval, zero_shot


def evaluation_config(args):
    """The `EvaluationConfig` the protocol and embedding options describe (shared with `cf-hf compare`)."""
    from cf_hf.evaluation import EvaluationConfig, FairnessConfig
    from cf_hf.evaluation.embedding import EmbeddingConfig

    concepts, templates = concepts_and_templates(args.concepts)
    if args.templates:  # the user's templates win over those of a concepts file
        templates = [line.strip() for line in Path(args.templates).read_text(encoding="utf-8").splitlines()
                     if line.strip() and not line.startswith("#")]
    cache_dir = args.cache_dir or str(Path(args.output_dir) / "embeddings")
    return EvaluationConfig(
        fairness=FairnessConfig(templates=templates, concepts=concepts, ks=args.ks,
                                desired=args.desired, convention=args.convention, attributes=args.attributes,
                                random_floor_queries=args.random_floor_queries),
        embedding=EmbeddingConfig(device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                                  storage_dtype=args.storage_dtype,
                                  cache_dir=None if cache_dir.lower() == "none" else cache_dir,
                                  progress=not args.quiet, num_workers=args.num_workers),
    )


def print_summary(results: dict) -> None:
    """One line per gallery (the k's used) and per model (headline numbers)."""
    for name, gallery in results["protocol"]["fairness"]["galleries"].items():
        print(f"fairness on {name!r} ({gallery['n_images']} images) at k = {gallery['ks']}"
              + (f"; k = {gallery['left_out_ks']} left out (not below the gallery size)" if gallery["left_out_ks"] else ""))
    for name, entry in results["models"].items():
        parts = [f"{attribute} MaxSkew {values['max_skew']:.3f} NDKL {values['ndkl']:.3f}"
                 for attribute, values in entry.items() if isinstance(values, dict) and "max_skew" in values]
        for key, label in (("zero_shot_accuracy", "zero-shot"), ("recall_at_5", "R@5")):
            if entry.get(key) is not None:
                parts.append(f"{label} {100 * entry[key]:.1f}%")
        print(f"{name}: " + "; ".join(parts))



class EvaluateCommand(Command):
    """`cf-hf evaluate`: load the models and sets, evaluate, write the report."""

    name = "evaluate"

    def build_parser(self) -> argparse.ArgumentParser:
        return build_parser()

    def parse(self, argv: list[str]):
        args = super().parse(argv)
        check_evaluation_options(args)
        return args

    def run(self, args) -> int:
        from cf_hf.evaluation.protocol import evaluate_models
        from cf_hf.evaluation.report import write_report
        from cf_hf.methods.registry import register_model_types

        register_model_types()  # every cf_hf checkpoint loads through AutoModel
        models, alphas = models_from_args(args, self.parser)
        fairness, retrieval, zero_shot = sets_from_args(args, self.parser)
        claim_output_folder(args.output_dir, self.name, output_settings(args), owned=EVALUATE_OUTPUTS,
                            overwrite=args.overwrite)
        results = evaluate_models(models, fairness, retrieval, zero_shot, evaluation_config(args), alphas=alphas)
        written = write_report(results, args.output_dir, plots=not args.no_plots)
        print_summary(results)
        print(f"wrote {', '.join(str(path) for path in written.values())}")
        return 0
