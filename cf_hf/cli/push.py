"""`cf-hf push dataset|model|metrics`: publish to the Hub (see `hub_scripts`).

Examples:
    cf-hf push dataset outputs/dataset --repo_id org/they-are-all-doctors
    cf-hf push model outputs/sweep --repo_id org/cf-clip --results outputs/sweep-eval/results.json \\
        --base_model openai/clip-vit-base-patch32 --dataset org/they-are-all-doctors
    cf-hf push metrics --namespace org
    cf-hf push explorer --repo_id org/cf-clip-explorer --model original=openai/clip-vit-base-patch32 \
        --model cf=./cf-clip --fairface ~/data/fairface
Add --dry_run to list what would be uploaded, --private for private repos. The token comes from
HF_TOKEN or `hf auth login`; the endpoint from HF_ENDPOINT.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

from cf_hf.cli.command import Command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cf-hf push", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--private", action="store_true", help="create the repos private")
    common.add_argument("--dry_run", action="store_true", help="list what would be uploaded; send nothing")
    kinds = parser.add_subparsers(dest="kind", required=True)

    dataset = kinds.add_parser("dataset", parents=[common], help="parquet shards + dataset card → a dataset repo")
    dataset.add_argument("folder", help="dataset folder: README.md + parquet shards")
    dataset.add_argument("--repo_id", required=True, help="e.g. org/they-are-all-doctors")

    model = kinds.add_parser("model", parents=[common], help="a checkpoint or an alpha sweep → one repo, a branch per alpha")
    model.add_argument("path", help="a checkpoint folder, or a sweep folder written by `cf-hf interpolate`")
    model.add_argument("--repo_id", required=True, help="e.g. org/cf-clip")
    model.add_argument("--results", help="results.json of `cf-hf evaluate --sweep` or `cf-hf demo` "
                       "(each card shows the numbers of the model with its α)")
    model.add_argument("--base_model", help="Hub id of the original CLIP (default: the sweep's original, if a Hub id)")
    model.add_argument("--dataset", action="extend", nargs="+", dest="datasets",
                       help="Hub ids of the fine-tuning datasets, space-separated (the option may be repeated)")
    model.add_argument("--default_alpha", type=float, help="alpha published on main (default: the largest)")
    model.add_argument("--sweep_plot", help="image of the alpha sweep, shown on every card")
    model.add_argument("--license", help="license id for the card metadata")

    metrics = kinds.add_parser("metrics", parents=[common], help="each evaluate module → a Space <namespace>/<name>")
    metrics.add_argument("--namespace", required=True, help="user or organisation owning the Spaces")
    metrics.add_argument("--names", nargs="+", help="modules to push (default: all)")

    from cf_hf.cli.explore import add_source_arguments

    explorer = kinds.add_parser("explorer", parents=[common], help="the retrieval explorer → a self-contained Space")
    explorer.add_argument("--repo_id", required=True, help="e.g. org/cf-clip-explorer")
    explorer.add_argument("--space_dir", help="keep the written Space folder here (must be new or empty)")
    explorer.add_argument("--title", default="cf_hf retrieval explorer", help="the page's title")
    explorer.add_argument("--thumbnail_pixels", type=int, default=128, help="longest side of the gallery thumbnails")
    explorer.add_argument("--gallery_repo", help="with --hf_gallery: the Hub dataset holding the same rows; the Space "
                          "loads the images from it instead of carrying thumbnails")
    add_source_arguments(explorer)
    explorer.set_defaults(explorer_parser=explorer)  # its option errors are reported by this sub-parser
    return parser


def _push_explorer(args, parser, options: dict) -> None:
    from cf_hf.cli.explore import embedding_config_from_args, gallery_from_args, models_from_args
    from hub_scripts.push_explorer import push_explorer

    models = models_from_args(args, parser)
    gallery = gallery_from_args(args, parser)
    if args.gallery_repo and not args.hf_gallery:
        parser.error("--gallery_repo needs --hf_gallery: the Hub dataset must hold the gallery's rows in its order")
    push_explorer(models, gallery, args.repo_id, args.space_dir, embedding_config_from_args(args),
                  title=args.title, desired=args.desired, convention=args.convention, prompt=args.prompt, k=args.k,
                  thumbnail_pixels=args.thumbnail_pixels, revision=args.revision, gallery_repo=args.gallery_repo,
                  gallery_split=args.hf_split or "train", image_column=args.image_column, **options)


# Packages whose exceptions mean the Hub could not be reached or answered (the HTTP clients, huggingface_hub).
HUB_CLIENT_PACKAGES = ("httpx", "httpcore", "requests", "urllib3", "huggingface_hub")


@contextmanager
def hub_connection_errors() -> Iterator[None]:
    """Turn a failed connection or Hub answer into one `OSError` naming the endpoint and the cause (the
    clients raise their own exception classes, chained, which the dispatcher would print as a trace)."""
    try:
        yield
    except (ValueError, OSError):
        raise
    except Exception as error:
        if type(error).__module__.split(".")[0].rstrip("0123456789") not in HUB_CLIENT_PACKAGES:
            raise
        from huggingface_hub import constants

        cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise OSError(f"the Hub at {constants.ENDPOINT} could not be reached or refused the request "
                      f"({type(error).__name__}: {cause}); check HF_ENDPOINT, the connection and the token") from None


class PushCommand(Command):
    """`cf-hf push dataset|model|metrics|explorer ...`."""

    name = "push"

    def build_parser(self) -> argparse.ArgumentParser:
        return build_parser()

    def run(self, args) -> int:
        with hub_connection_errors():
            return self._push(args)

    def _push(self, args) -> int:
        from cf_hf.methods.registry import register_model_types

        register_model_types()  # every cf_hf checkpoint loads through AutoModel
        options = {"private": args.private, "dry_run": args.dry_run}
        if args.kind == "dataset":
            from hub_scripts.push_dataset import push_dataset

            push_dataset(args.folder, args.repo_id, **options)
        elif args.kind == "model":
            from hub_scripts.push_model import push_model

            push_model(args.path, args.repo_id, results=args.results, base_model=args.base_model,
                       datasets=args.datasets, default_alpha=args.default_alpha, sweep_plot=args.sweep_plot,
                       license=args.license, **options)
        elif args.kind == "explorer":
            _push_explorer(args, args.explorer_parser, options)
        else:
            from hub_scripts.push_metrics import push_metrics

            push_metrics(args.namespace, args.names, **options)
        return 0
