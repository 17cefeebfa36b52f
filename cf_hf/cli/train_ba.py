"""`cf-hf train-ba`: train the bias-alignment module (`cf_hf.methods.bias_alignment`) on a frozen CLIP."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cf_hf.cli.command import QUIET_HELP, Command, interrupted_training
from cf_hf.cli.validation import require_positive, require_training_length
from cf_hf.evaluation.galleries.fairface import FAIRFACE_ATTRIBUTES
from cf_hf.methods.bias_alignment.captions import caption_setting, check_caption_setup
from cf_hf.methods.bias_alignment.rows import BiasAlignmentData, counterfactual_data, gallery_data
from cf_hf.methods.bias_alignment.trainer import BiasAlignmentArguments, train_bias_alignment
from cf_hf.methods.bias_alignment.validation import split_validation, validation_data
from cf_hf.methods.linear import MethodError
from cf_hf.utils.model_loading import CLIP_MODEL_TYPE_PREFIX, check_model_source
from cf_hf.utils.output_folder import TRAINER_OUTPUTS, claim_output_folder, training_settings


@dataclass
class TrainBiasAlignmentCommandArguments:
    """The `cf-hf train-ba` options that are not `BiasAlignmentArguments`."""

    fairface: str = field(metadata={"help": "FairFace folder with the labelled training images (the train split)"})
    model_name_or_path: str = field(default="openai/clip-vit-base-patch16",
                                    metadata={"help": "the original CLIP (kept frozen); the authors' ViT-B/16 by default"})
    fairface_csv: str | None = field(default=None, metadata={"help": "labels CSV; unset: FAIRFACE/fairface_label_train.csv"})
    fairface_padding: str | None = field(default=None, metadata={"help": "which FairFace crop when both are present",
                                                                  "choices": ["0.25", "1.25"]})
    fairface_labels: str | None = field(default=None, metadata={
        "help": "YAML/JSON 'attribute: [values]' of a CSV that does not use FairFace's own label values"})
    fairface_attributes: list[str] = field(default_factory=lambda: list(FAIRFACE_ATTRIBUTES), metadata={
        "help": "label columns of the FairFace CSV that are sensitive attributes, space-separated"})
    skip_missing: bool = field(default=False, metadata={"help": "skip (and count) rows whose image is missing"})
    attribute: list[str] = field(default_factory=lambda: ["gender"], metadata={
        "help": "attribute(s) whose values the counterfactual captions swap, space-separated"})
    caption_template: str | None = field(default=None, metadata={
        "help": "caption of a labelled image (and form of its counterfactual), with {attribute} fields; must mention "
                "every --attribute; unset: the authors' caption for the attribute(s) (gender, age, race, or the three: "
                "cf_hf/methods/bias_alignment/captions.yaml)"})
    caption_words: str | None = field(default=None, metadata={
        "help": "YAML/JSON 'attribute: {label: word}' to write labels as other words in the captions (over the "
                "authors' words when --caption_template is unset)"})
    validation_fraction: float = field(default=0.125, metadata={
        "help": "share of the labelled rows held out for the best-ABLE selection (the authors hold out 0.125, their draw "
                "on the CSV sorted by file)"})
    validation_imagenet: str | None = field(default=None, metadata={
        "help": "ImageNet-style folder (one folder per class) for ABLE's accuracy term (the authors: ImageNetV2); "
                "required unless --eval_strategy no"})
    counterfactual_dataset: str | None = field(default=None, metadata={
        "help": "cf_hf's counterfactual dataset (folder or Hub id): adds image counterfactuals to L_cd"})
    embedding_batch_size: int = field(default=64, metadata={"help": "images or texts per CLIP forward pass"})
    cache_dir: str | None = field(default=None, metadata={
        "help": "cache of CLIP's embeddings of the training rows; unset: OUTPUT_DIR/embeddings"})
    device: str = field(default="cpu", metadata={"help": "device CLIP embeds the rows on"})
    overwrite: bool = field(default=False, metadata={
        "help": "replace an earlier `cf-hf train-ba` run in --output_dir (only what it wrote is deleted)"})
    quiet: bool = field(default=False, metadata={"aliases": ["--no_progress"], "help": QUIET_HELP})


def _caption_words(path: str | None) -> dict | None:
    if path is None:
        return None
    import yaml

    try:
        words = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise MethodError(f"cannot read the caption words {path}: {error}") from None
    if not isinstance(words, dict) or not all(isinstance(value, dict) for value in words.values()):
        raise MethodError(f"{path}: expected 'attribute: {{label: word}}' mappings")
    return words


def build_parser():
    """The `cf-hf train-ba` parser: `HfArgumentParser` over the command's options and
    `BiasAlignmentArguments`."""
    from transformers import HfArgumentParser

    return HfArgumentParser(
        (TrainBiasAlignmentCommandArguments, BiasAlignmentArguments), prog="cf-hf train-ba",
        description="Train the bias-alignment module (CVPR 2025) on a frozen CLIP from FairFace-format labelled "
                    "images, optionally with cf_hf's image counterfactuals; CLIP's embeddings are computed once and "
                    "cached. Writes a checkpoint that `cf-hf evaluate` and `cf-hf compare` read. Resume with "
                    "--resume_from_checkpoint last. List options take space-separated values.")


def run_command(command: TrainBiasAlignmentCommandArguments, args: BiasAlignmentArguments) -> Path:
    """Load the data, embed it (cached), train and save: `cf-hf train-ba` without the parsing."""
    from cf_hf.evaluation import load_fairface
    from cf_hf.evaluation.embedding import EmbeddingConfig, EmbeddingEngine

    csv = command.fairface_csv or Path(command.fairface) / "fairface_label_train.csv"
    gallery = load_fairface(command.fairface, csv, command.fairface_padding, attributes=command.fairface_attributes,
                            skip_missing=command.skip_missing, label_values=command.fairface_labels,
                            name="fairface-train")
    setting = caption_setting(command.attribute, command.caption_template, _caption_words(command.caption_words))
    check_caption_setup(setting, gallery.attributes, f"the gallery {gallery.name!r}")
    embedding = EmbeddingConfig(device=command.device, batch_size=command.embedding_batch_size,
                                cache_dir=command.cache_dir or str(Path(args.output_dir) / "embeddings"),
                                progress=not command.quiet)
    engine = EmbeddingEngine.from_pretrained(command.model_name_or_path, embedding)
    validation = None
    if args.evaluates:
        gallery, held_out = split_validation(gallery, command.validation_fraction)
        if not command.validation_imagenet:
            raise MethodError("--validation_imagenet DIR is needed for the best-ABLE selection (ABLE's accuracy "
                              "term; the authors use ImageNetV2), or train without it: --eval_strategy no "
                              "--early_stopping_patience 0")
        from cf_hf.evaluation import load_imagenet_folder

        validation = validation_data(engine, held_out, command.attribute,
                                     load_imagenet_folder(command.validation_imagenet, name="validation-imagenet"))
    data = gallery_data(engine, gallery, setting, seed=args.seed)
    rows = len(data)
    if command.counterfactual_dataset:
        data = BiasAlignmentData.concatenate([data, counterfactual_data(engine, command.counterfactual_dataset,
                                                                        seed=args.seed)])
    del engine
    record = {"variant": "bias_alignment_image_cf" if command.counterfactual_dataset else "bias_alignment",
              "attributes": list(command.attribute), "captions": setting.record(),
              "gallery": str(csv), "rows": len(data), "labelled_rows": rows,
              "image_counterfactual_rows": data.image_counterfactual_rows,
              "counterfactual_dataset": command.counterfactual_dataset,
              "validation": {"fraction": command.validation_fraction, "rows": len(validation.image),
                             "imagenet": command.validation_imagenet} if validation is not None else None}
    return train_bias_alignment(command.model_name_or_path, data, args, record, validation)


class TrainBiasAlignmentCommand(Command):
    """`cf-hf train-ba`: parse with `HfArgumentParser`, train, print the checkpoint folder."""

    name = "train-ba"

    def build_parser(self):
        return build_parser()

    def parse(self, argv: list[str]):
        """The options, checked before any work: the training length, the sizes, the caption setup."""
        command, training_args = super().parse(argv)
        require_training_length(training_args)
        require_positive("--embedding_batch_size", command.embedding_batch_size)
        missing = sorted(set(command.attribute) - set(command.fairface_attributes))
        if missing:
            raise ValueError(f"--attribute {' '.join(missing)}: not among --fairface_attributes "
                             f"{' '.join(command.fairface_attributes)}")
        setting = caption_setting(command.attribute, command.caption_template, _caption_words(command.caption_words))
        check_caption_setup(setting, set(command.fairface_attributes), "--fairface_attributes")
        return command, training_args

    def run(self, args) -> int:
        command, training_args = args
        check_model_source(command.model_name_or_path, role="--model_name_or_path",
                           model_type_prefix=CLIP_MODEL_TYPE_PREFIX)
        settings = {name: value for name, value in vars(command).items() if name not in {"quiet", "overwrite", "device"}}
        claim_output_folder(training_args.output_dir, self.name, training_settings(training_args, **settings),
                            owned=TRAINER_OUTPUTS, overwrite=command.overwrite,
                            resume=training_args.resume_from_checkpoint not in (None, False, "False", "false"))
        if command.quiet:
            training_args.disable_tqdm = True
        with interrupted_training(training_args.output_dir):
            print(run_command(command, training_args))
        return 0
