"""Every evaluation loader on good and malformed input: the error names the file, row or column."""

from __future__ import annotations

import json

import pytest
from testing_utils.evaluation import (
    make_fairface,
    make_imagenet,
    make_karpathy,
    make_pata,
    make_utkface,
    write_image,
)

from cf_hf.evaluation import (
    AttributeGallery,
    RetrievalSet,
    ZeroShotSet,
    load_fairface,
    load_hf_gallery,
    load_hf_retrieval,
    load_hf_zero_shot,
    load_imagenet_folder,
    load_karpathy,
    load_pata,
    load_utkface,
)

# ---------------------------------------------------------------------------------------------
# FairFace


def test_fairface_loads_images_and_attributes(tmp_path):
    gallery = load_fairface(make_fairface(tmp_path))
    assert len(gallery) == 24
    assert set(gallery.attributes) == {"gender", "race", "age"}
    assert gallery.attributes["gender"][:2] == ["Male", "Female"]
    assert gallery.images[0].endswith("val/1.jpg")


def test_fairface_finds_the_padding_variant_folder(tmp_path):
    make_fairface(tmp_path, variant="fairface-img-margin025-trainval")
    gallery = load_fairface(tmp_path)
    assert "margin025" in gallery.images[0]


def test_fairface_with_both_variants_asks_for_padding(tmp_path):
    make_fairface(tmp_path, variant="fairface-img-margin025-trainval")
    make_fairface(tmp_path, variant="fairface-img-margin125-trainval")
    with pytest.raises(ValueError, match="padding"):
        load_fairface(tmp_path)
    assert "margin125" in load_fairface(tmp_path, padding="1.25").images[0]


def test_fairface_missing_column_is_named(tmp_path):
    make_fairface(tmp_path)
    csv = tmp_path / "fairface_label_val.csv"
    csv.write_text(csv.read_text().replace("race", "ethnicity", 1))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['race'\]"):
        load_fairface(tmp_path)


def test_fairface_empty_cell_names_line_and_column(tmp_path):
    make_fairface(tmp_path)
    csv = tmp_path / "fairface_label_val.csv"
    lines = csv.read_text().splitlines()
    lines[3] = lines[3].replace(",Male,", ",,").replace(",Female,", ",,")
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"line 4: column 'gender' is empty"):
        load_fairface(tmp_path)


def test_fairface_missing_image_names_line_unless_skipped(tmp_path):
    make_fairface(tmp_path)
    (tmp_path / "val" / "5.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"line 6: image 'val/5.jpg'"):
        load_fairface(tmp_path)
    gallery = load_fairface(tmp_path, skip_missing=True)
    assert len(gallery) == 23 and "1 rows skipped" in gallery.source


def _relabel(csv, old, new, line):
    lines = csv.read_text().splitlines()
    lines[line - 1] = lines[line - 1].replace(old, new)
    csv.write_text("\n".join(lines) + "\n")


def test_fairface_unknown_label_is_refused_naming_line_and_option(tmp_path):
    make_fairface(tmp_path)
    _relabel(tmp_path / "fairface_label_val.csv", ",White,", ",Martian,", 2)
    with pytest.raises(ValueError, match=r"line 2: column 'race' holds 'Martian'.*--fairface_labels"):
        load_fairface(tmp_path)


def test_fairface_own_label_set_is_accepted_and_checked(tmp_path):
    make_fairface(tmp_path)
    csv = tmp_path / "fairface_label_val.csv"
    csv.write_text(csv.read_text().replace(",East Asian,", ",Asian,"))
    labels = tmp_path.parent / "labels.yaml"
    labels.write_text("race: [White, Black, Asian, Indian]\n")
    gallery = load_fairface(tmp_path, label_values=labels)
    assert set(gallery.attributes["race"]) == {"White", "Black", "Asian", "Indian"}
    _relabel(csv, ",Asian,", ",Martian,", 6)
    with pytest.raises(ValueError, match=r"line 6: .*'Martian'.*the given label set"):
        load_fairface(tmp_path, label_values={"race": ["White", "Black", "Asian", "Indian"]})


def test_fairface_missing_csv_says_which_option(tmp_path):
    tmp_path.joinpath("val").mkdir()
    with pytest.raises(FileNotFoundError, match="--fairface_csv"):
        load_fairface(tmp_path)


# ---------------------------------------------------------------------------------------------
# UTKFace


def test_utkface_parses_file_names_and_bins_ages(tmp_path):
    gallery = load_utkface(make_utkface(tmp_path))
    assert len(gallery) == 20
    first = sorted(tmp_path.iterdir())[0].name  # 20_0_0_... -> Male, White, 20-29
    index = [path.split("/")[-1] for path in gallery.images].index(first)
    assert (gallery.attributes["gender"][index], gallery.attributes["race"][index],
            gallery.attributes["age"][index]) == ("Male", "White", "20-29")
    assert set(gallery.attributes["race"]) == {"White", "Black", "Asian", "Indian", "Others"}


@pytest.mark.parametrize("bad_name", ["x_0_1_2017.jpg", "30_5_1_2017.jpg", "30_0_1_2_2017.jpg"])
def test_utkface_malformed_name_is_named_with_the_existing_flag(tmp_path, bad_name):
    make_utkface(tmp_path)
    write_image(tmp_path / bad_name, (0, 0, 0), 0)
    with pytest.raises(ValueError, match=bad_name.replace(".", r"\.")) as raised:
        load_utkface(tmp_path)
    assert "--skip_missing" in str(raised.value) and "--skip_malformed" not in str(raised.value)
    gallery = load_utkface(tmp_path, skip_malformed=True)
    assert len(gallery) == 20 and "1 malformed file names skipped" in gallery.source


def test_utkface_names_with_a_missing_field_are_skipped_and_counted(tmp_path):
    make_utkface(tmp_path)
    # As in the public archive: three numeric fields, one missing.
    for name in ("39_1_20170116174525125.jpg.chip.jpg", "61_3_20170109150557335.jpg.chip.jpg"):
        write_image(tmp_path / name, (0, 0, 0), 0)
    gallery = load_utkface(tmp_path)
    assert len(gallery) == 20
    assert "2 file names with a missing field skipped" in gallery.source


# ---------------------------------------------------------------------------------------------
# PATA


def test_pata_loads_scenes_attributes_and_caption_queries(tmp_path):
    files_list, captions = make_pata(tmp_path)
    gallery = load_pata(files_list, captions)
    assert len(gallery) == 24
    assert set(gallery.concepts) == {"gun range", "office"}
    assert set(gallery.attributes) == {"race", "gender", "age"}
    assert gallery.images[0].endswith("0.jpg")  # the URL line, resolved by file name
    by_text = {(query.text, query.polarity): query for query in gallery.queries}
    # One caption listed under two attributes is one query evaluated on both.
    assert by_text[("a photo of a person at a gun range", "pos")].attributes == ("gender", "race")
    assert by_text[("a photo of a criminal", "neg")].attributes == ("age", "race")
    assert by_text[("a photo of a manager", "pos")].concept == "office"


def test_pata_without_captions_uses_the_protocol_prompts(tmp_path):
    files_list, _ = make_pata(tmp_path)
    assert load_pata(files_list).queries is None


def test_pata_malformed_line_is_named(tmp_path):
    files_list, _ = make_pata(tmp_path)
    files_list.write_text(files_list.read_text() + "office_white_male|images/1.jpg\n")
    with pytest.raises(ValueError, match=r"line 25: expected 'scene_race_gender_age\|path'"):
        load_pata(files_list)


def test_pata_malformed_captions_entry_is_named(tmp_path):
    files_list, captions = make_pata(tmp_path)
    data = json.loads(captions.read_text())
    data[1]["pos"]["ethnicity"] = ["x"]
    captions.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"entry 1: pos\.ethnicity: unknown attribute"):
        load_pata(files_list, captions)


def test_pata_missing_image_is_named(tmp_path):
    files_list, _ = make_pata(tmp_path)
    (tmp_path / "images" / "3.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="line 4: image not found"):
        load_pata(files_list)


# ---------------------------------------------------------------------------------------------
# Karpathy split


def test_karpathy_loads_the_test_split(tmp_path):
    retrieval = load_karpathy(make_karpathy(tmp_path), tmp_path)
    assert len(retrieval) == 6 and retrieval.name == "flickr30k"
    assert all(len(captions) == 5 for captions in retrieval.captions)
    assert retrieval.captions[0][0] == "a photo of a doctor number 0"


def test_karpathy_unknown_split_lists_the_splits(tmp_path):
    with pytest.raises(ValueError, match=r"splits present: \['test', 'train'\]"):
        load_karpathy(make_karpathy(tmp_path), tmp_path, split="val")


def test_karpathy_bad_sentence_is_named(tmp_path):
    path = make_karpathy(tmp_path)
    data = json.loads(path.read_text())
    data["images"][2]["sentences"][1] = {"tokens": []}
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"images\[2\]: sentences\[1\] has no 'raw' text"):
        load_karpathy(path, tmp_path)


def test_karpathy_missing_key_and_image_are_named(tmp_path):
    path = make_karpathy(tmp_path)
    data = json.loads(path.read_text())
    del data["images"][4]["filename"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"images\[4\]: missing 'filename'"):
        load_karpathy(path, tmp_path)
    path = make_karpathy(tmp_path)
    (tmp_path / "images" / "1.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"images\[1\]: image '1.jpg' not found"):
        load_karpathy(path, tmp_path)


# ---------------------------------------------------------------------------------------------
# ImageNet-style folders


def test_imagenet_folder_with_default_and_given_names(tmp_path):
    make_imagenet(tmp_path)
    zero_shot = load_imagenet_folder(tmp_path)
    assert zero_shot.class_names == ["chef", "doctor", "nurse"]  # sorted folders
    assert zero_shot.labels == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert len(zero_shot.templates) == 7  # the shipped ensemble
    names = tmp_path.parent / "names.json"
    names.write_text(json.dumps({"chef": "cook", "doctor": "physician", "nurse": "nurse"}))
    templates = tmp_path.parent / "templates.txt"
    templates.write_text("a photo of a {}.\n# comment\nart of the {concept}.\n")
    zero_shot = load_imagenet_folder(tmp_path, names, templates)
    assert zero_shot.class_names == ["cook", "physician", "nurse"]
    assert zero_shot.templates == ["a photo of a {}.", "art of the {concept}."]


def _wordnet_folders(root):
    for wnid in ("n01440764", "n01443537"):
        for index in range(2):
            write_image(root / wnid / f"ILSVRC2012_val_{wnid}_{index}.JPEG", (10, 20, 30), index)
    return root


def test_imagenet_wordnet_id_folders_require_class_names(tmp_path):
    _wordnet_folders(tmp_path / "val")
    with pytest.raises(ValueError, match=r"WordNet ids \(n01440764, n01443537\).*--imagenet_classes"):
        load_imagenet_folder(tmp_path / "val")


def test_imagenet_reads_loc_synset_mapping(tmp_path):
    _wordnet_folders(tmp_path / "val")
    mapping = tmp_path / "LOC_synset_mapping.txt"
    mapping.write_text("n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\n"
                       "n01484850 great white shark, white shark\n")
    zero_shot = load_imagenet_folder(tmp_path / "val", mapping)
    assert zero_shot.class_names == ["tench", "goldfish"]


def test_imagenet_wrong_class_count_is_explained(tmp_path):
    make_imagenet(tmp_path)
    with pytest.raises(ValueError, match="2 class names for 3 class folders"):
        load_imagenet_folder(tmp_path, ["a", "b"])


def test_imagenet_class_missing_from_mapping_is_named(tmp_path):
    make_imagenet(tmp_path)
    with pytest.raises(ValueError, match=r"no class name for the folder\(s\) \['nurse'\]"):
        load_imagenet_folder(tmp_path, {"chef": "cook", "doctor": "physician"})


def test_imagenet_empty_class_folder_is_named(tmp_path):
    make_imagenet(tmp_path)
    (tmp_path / "pilot").mkdir()
    with pytest.raises(ValueError, match="pilot: class folder holds no image"):
        load_imagenet_folder(tmp_path)


def test_imagenet_template_without_placeholder_is_named(tmp_path):
    make_imagenet(tmp_path)
    with pytest.raises(ValueError, match=r"template 1 \('a photo'\) has no concept placeholder"):
        load_imagenet_folder(tmp_path, templates=["a {}", "a photo"])


# ---------------------------------------------------------------------------------------------
# `datasets` datasets


@pytest.fixture
def hf_dataset(tmp_path):
    import datasets

    paths = [str(write_image(tmp_path / f"{index}.png", (200 * (index % 2), 50, 50), index)) for index in range(6)]
    features = datasets.Features({
        "image": datasets.Image(),
        "gender": datasets.ClassLabel(names=["female", "male"]),
        "skin": datasets.Value("string"),
        "concept": datasets.Value("string"),
        "caption": datasets.Value("string"),
    })
    return datasets.Dataset.from_dict({
        "image": paths, "gender": [index % 2 for index in range(6)],
        "skin": ["light", "dark", "dark", "light", "light", "dark"],
        "concept": ["doctor", "nurse"] * 3, "caption": [f"photo {index}" for index in range(6)],
    }, features=features)


def test_hf_gallery_decodes_class_labels_and_images_lazily(hf_dataset):
    gallery = load_hf_gallery(hf_dataset, ["gender", "skin"], concept_column="concept", name="hf")
    assert gallery.attributes["gender"] == ["female", "male"] * 3
    assert gallery.concepts[:2] == ["doctor", "nurse"]
    batch = gallery.images.get_batch(0, 2)
    assert len(batch) == 2 and batch[0].size == (8, 8)
    assert gallery.fingerprint.startswith("datasets:")


def test_hf_gallery_from_a_saved_folder(hf_dataset, tmp_path):
    hf_dataset.save_to_disk(tmp_path / "saved")
    assert len(load_hf_gallery(str(tmp_path / "saved"), ["gender"])) == 6


def test_hf_gallery_unknown_column_lists_the_columns(hf_dataset):
    with pytest.raises(ValueError, match=r"attribute_columns: column\(s\) \['race'\] not in the dataset"):
        load_hf_gallery(hf_dataset, ["race"])


def test_hf_gallery_missing_value_names_row_and_column(hf_dataset):
    import datasets

    data = hf_dataset.cast_column("skin", datasets.Value("string")).to_dict()
    data["skin"][4] = None
    broken = datasets.Dataset.from_dict(data, features=hf_dataset.features)
    with pytest.raises(ValueError, match=r"column 'skin': row 4 has no value"):
        load_hf_gallery(broken, ["skin"])


def test_hf_gallery_nan_value_names_row_and_column(hf_dataset):
    scored = hf_dataset.add_column("age", [20.0, 30.0, float("nan"), 40.0, 20.0, 30.0])
    with pytest.raises(ValueError, match=r"column 'age': row 2 has no value \(nan\)"):
        load_hf_gallery(scored, ["age"])


def test_hf_retrieval_and_zero_shot(hf_dataset):
    retrieval = load_hf_retrieval(hf_dataset, caption_column="caption")
    assert retrieval.captions[1] == ["photo 1"]
    zero_shot = load_hf_zero_shot(hf_dataset, label_column="gender", attribute_columns=["skin"])
    assert zero_shot.class_names == ["female", "male"] and zero_shot.attributes["skin"][0] == "light"


# ---------------------------------------------------------------------------------------------
# The dataclasses validate what the world (or a user) builds directly


def test_gallery_with_a_single_group_is_rejected():
    with pytest.raises(ValueError, match="attribute 'gender' has a single value"):
        AttributeGallery(images=["a", "b"], attributes={"gender": ["f", "f"]})


def test_gallery_nan_label_is_named():
    with pytest.raises(ValueError, match="attribute 'gender' has no value for image 1"):
        AttributeGallery(images=["a.png", "b.png", "c.png"], attributes={"gender": ["F", float("nan"), "M"]})


def test_gallery_label_count_mismatch_is_named():
    with pytest.raises(ValueError, match="attribute 'race' has 1 labels for 2 images"):
        AttributeGallery(images=["a", "b"], attributes={"race": ["x"]})


def test_retrieval_image_without_caption_is_named():
    with pytest.raises(ValueError, match="image 1 needs at least one non-empty caption"):
        RetrievalSet(images=["a", "b"], captions=[["x"], []])


def test_zero_shot_label_out_of_range_is_named():
    with pytest.raises(ValueError, match=r"image 1 has label 2, outside \[0, 2\)"):
        ZeroShotSet(images=["a", "b"], labels=[0, 2], class_names=["x", "y"])
