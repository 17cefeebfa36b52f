"""`cf-hf explore`: the retrieval explorer in the browser, for any gallery the evaluation harness loads.

    cf-hf explore --model original=openai/clip-vit-base-patch32 --model cf=./cf-clip --fairface ~/data/fairface
    cf-hf explore --model original=outputs/demo/original --model cf=outputs/demo/seed-0/sweep/alpha-1 \\
        --world_gallery test

The gallery is embedded once per model into the embedding cache (memory-mapped `.npy` files);
later starts and every query read it from there. `--check PROMPT` answers one prompt in the
terminal and exits instead of serving the page.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cf_hf.cli.command import Command, add_quiet_option
from cf_hf.cli.validation import require_positive

DEFAULT_CACHE_DIR = Path("~/.cache/cf_hf/explorer").expanduser()
DEFAULT_PORT = 7860
WORLD_SPLITS = ("test", "validation")


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The models, gallery, protocol and embedding options shared by `cf-hf explore` and
    `cf-hf push explorer`."""
    from cf_hf.cli.evaluate import add_gallery_options

    models = parser.add_argument_group("models")
    models.add_argument("--model", action="extend", nargs="+", default=[], metavar="[NAME=]PATH",
                        help="CLIP checkpoint folders or Hub ids, space-separated (the option may be repeated); "
                             "without NAME= a model is named after its folder")
    models.add_argument("--revision", help="Hub revision for --model ids")

    gallery = parser.add_argument_group("gallery (exactly one)")
    add_gallery_options(gallery)
    gallery.add_argument("--world_gallery", choices=WORLD_SPLITS,
                         help="the professions world's FairFace, drawn as `cf-hf demo` draws its test or validation gallery")
    gallery.add_argument("--world_per_cell", type=int,
                         help="people per (gender, skin tone, age) cell of --world_gallery; unset: as `cf-hf demo` draws it")
    gallery.add_argument("--skip_missing", action="store_true", help="skip (and count) rows whose image is missing")

    protocol = parser.add_argument_group("protocol")
    protocol.add_argument("--desired", choices=["equal_opportunity", "demographic_parity"], default="equal_opportunity",
                          help="desired distribution of MaxSkew and NDKL")
    protocol.add_argument("--convention", choices=["berg", "exact"], default="berg",
                          help="berg: a value absent from the top-k counts as 1/k and MaxSkew >= 0; exact: the plain definitions")
    protocol.add_argument("--prompt", default=None, help="the prompt the page opens with")
    protocol.add_argument("--k", type=int, default=None, help="the k the page opens with, below the gallery size; unset: 24 (or the gallery size - 1)")

    engine = parser.add_argument_group("embedding")
    engine.add_argument("--device", default="cpu", help="torch device the models run on (cpu, cuda, mps)")
    engine.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"], help="dtype the models run in")
    engine.add_argument("--batch_size", type=int, default=64, help="images per forward pass when embedding the gallery")
    engine.add_argument("--storage_dtype", default="float32", choices=["float32", "float16"],
                        help="dtype of the stored gallery embeddings")
    engine.add_argument("--cache_dir", default=str(DEFAULT_CACHE_DIR),
                        help="embedding cache (memory-mapped .npy files); 'none' keeps them in memory only")
    add_quiet_option(engine)


def build_parser() -> argparse.ArgumentParser:
    """The `cf-hf explore` parser (argparse alone: `--help` imports nothing heavy)."""
    parser = argparse.ArgumentParser(
        prog="cf-hf explore",
        description="A web page that shows, for any prompt, the top-k images each model retrieves from an "
                    "attribute-labelled gallery, the attribute shares in that top-k against the gallery's, and the "
                    "prompt's MaxSkew and NDKL. List options take space-separated values.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_source_arguments(parser)
    serve = parser.add_argument_group("serving")
    serve.add_argument("--host", default="127.0.0.1", help="address the page is served on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="port of the page")
    serve.add_argument("--check", metavar="PROMPT",
                       help="answer PROMPT in the terminal (top-k labels, shares, MaxSkew, NDKL) and exit without serving")
    serve.add_argument("--attribute", help="the attribute of --check; unset: the gallery's first")
    return parser


def models_from_args(args, parser) -> dict[str, str]:
    """name -> checkpoint of the --model options (at least one)."""
    from cf_hf.cli.evaluate import models_from_args as evaluation_models

    args.sweep = None
    models, _ = evaluation_models(args, parser)
    return models


def gallery_from_args(args, parser):
    """The one gallery the options name, through the evaluation harness's loaders."""
    from cf_hf.cli.evaluate import sets_from_args

    chosen = [option for option in ("fairface", "utkface", "pata", "hf_gallery", "world_gallery") if getattr(args, option)]
    if len(chosen) != 1:
        parser.error("give exactly one gallery: --fairface, --utkface, --pata, --hf_gallery or --world_gallery"
                     + (f" (got {', '.join('--' + option for option in chosen)})" if chosen else ""))
    if args.world_gallery:
        from cf_hf.explorer.build import load_world_gallery

        return load_world_gallery(args.world_gallery, args.world_per_cell)
    harness_args = argparse.Namespace(**vars(args), concept_column=None, flickr=None, flickr_images=None, coco=None,
                                      coco_images=None, imagenet=None)
    fairness, _, _ = sets_from_args(harness_args, parser)
    return fairness[0]


def embedding_config_from_args(args):
    """The `EmbeddingConfig` of the embedding options."""
    from cf_hf.evaluation.embedding import EmbeddingConfig

    cache_dir = None if str(args.cache_dir).lower() == "none" else str(args.cache_dir)
    return EmbeddingConfig(device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                           storage_dtype=args.storage_dtype, cache_dir=cache_dir, progress=not args.quiet)


def explorer_from_args(args, parser):
    """(Explorer, image(index) -> PIL image) of the parsed options."""
    from cf_hf.explorer.build import build_explorer, gallery_image

    models = models_from_args(args, parser)
    gallery = gallery_from_args(args, parser)
    explorer, _ = build_explorer(models, gallery, embedding_config_from_args(args), args.desired, args.convention,
                                 args.revision)
    return explorer, lambda index: gallery_image(gallery, index)


def print_answers(explorer, prompt: str, k: int, attribute: str | None) -> None:
    """`--check`: each model's answer as lines of text."""
    attribute = attribute or explorer.attributes[0]
    for answer in explorer.search(prompt, k, attribute):
        shares = ", ".join(f"{value} {100 * share:.0f}% (gallery {100 * answer.gallery_shares[value]:.0f}%)"
                           for value, share in answer.top_k_shares.items())
        print(f"{answer.model}: MaxSkew@{k} {answer.max_skew:.3f} NDKL@{k} {answer.ndkl:.3f}; {attribute}: {shares}")
        print(f"  top-{k}: {' '.join(str(int(index)) for index in answer.indices)}")


def require_gradio() -> None:
    """A clear error when the optional extra is missing (before any model is loaded)."""
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        raise ValueError("the explorer page needs gradio, an optional extra: pip install 'cf_hf[explorer]'")


def _explore(args, parser) -> int:
    from cf_hf.explorer.ui import DEFAULT_K, DEFAULT_PROMPT, build_app

    if args.check is None:
        require_gradio()
    explorer, image = explorer_from_args(args, parser)
    if args.k is not None and args.k > explorer.max_k:
        raise ValueError(f"--k {args.k} is not below the size of the gallery {explorer.gallery_name!r} "
                         f"({explorer.n_images} images): its top-k would be the whole gallery, and MaxSkew its "
                         f"composition; choose --k between 1 and {explorer.max_k}")
    k = args.k if args.k is not None else min(DEFAULT_K, explorer.max_k)
    if args.check is not None:
        print_answers(explorer, args.check, k, args.attribute)
        return 0
    app = build_app(explorer, image, default_prompt=args.prompt or DEFAULT_PROMPT, default_k=k)
    print(f"explorer of {', '.join(explorer.models)} on {explorer.gallery_name!r} ({explorer.n_images} images): "
          f"http://{args.host}:{args.port}  (Ctrl+C stops it)", flush=True)
    app.launch(server_name=args.host, server_port=args.port, quiet=True)
    return 0


class ExploreCommand(Command):
    """`cf-hf explore`: build the explorer and serve it (or answer --check)."""

    name = "explore"

    def build_parser(self) -> argparse.ArgumentParser:
        return build_parser()

    def parse(self, argv: list[str]):
        args = super().parse(argv)
        require_positive("--k", args.k)
        require_positive("--batch_size", args.batch_size)
        require_positive("--world_per_cell", args.world_per_cell)
        return args

    def run(self, args) -> int:
        from cf_hf.methods.registry import register_model_types

        register_model_types()  # every cf_hf checkpoint loads through AutoModel
        return _explore(args, self.parser)
