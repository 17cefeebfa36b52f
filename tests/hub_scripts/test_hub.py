"""Publishing to the Hub, tested end to end against the Hub-protocol server in `testing_utils/hub_server.py`.

The pushes run here through the real `huggingface_hub` client; the loads run in a fresh process
that does not import cf_hf, through `datasets`, `transformers` and `evaluate`, as another project
would use the published dataset, CF_alpha checkpoints and metrics.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from testing_utils import TESTS
from testing_utils.hub import TOKEN, build_dataset_folder, build_sweep, point_client_at
from testing_utils.hub_server import HubServer

from cf_hf.cli import main as cf_hf_main
from hub_scripts import HubPushError, push_dataset, push_metrics, push_model

pytestmark = pytest.mark.slow  # starts several processes, a server or the demo


def push_main(argv):
    """`cf-hf push` with these options, through the dispatcher."""
    return cf_hf_main(["push", *argv])


NAMESPACE = "org"
DATASET_REPO = f"{NAMESPACE}/they-are-all-doctors"
MODEL_REPO = f"{NAMESPACE}/cf-clip"
RESULTS = {"schema_version": 1, "protocol": {}, "models": {
    "original": {"gender": {"max_skew": 0.7, "min_skew": -0.5, "ndkl": 0.2}, "zero_shot_accuracy": 0.81},
    "alpha=0.5": {"alpha": 0.5, "gender": {"max_skew": 0.3, "min_skew": -0.2, "ndkl": 0.1}, "zero_shot_accuracy": 0.8},
    "alpha=1": {"alpha": 1.0, "gender": {"max_skew": 0.2, "min_skew": -0.1, "ndkl": 0.05}, "recall_at_5": 0.6},
}}
GROUP_IDS = ["group-0"] * 3 + ["group-1"] * 3
CLIENT_SCRIPT = TESTS / "scripts" / "hub_contract_client.py"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The Hub-protocol server on a free loopback port, requiring `TOKEN` for writes."""
    hub = HubServer(tmp_path_factory.mktemp("hub"), token=TOKEN).start()
    yield hub
    hub.stop()


@pytest.fixture
def client(server, monkeypatch):
    point_client_at(monkeypatch, server)
    return server


@pytest.fixture(scope="module")
def published(server, tiny_clip_dir, tmp_path_factory):
    """Dataset, CF_alpha sweep (alphas 0, 0.5, 1) and metric modules, pushed once."""
    work = tmp_path_factory.mktemp("publish")
    sweep = build_sweep(tiny_clip_dir, work)
    dataset = build_dataset_folder(work / "dataset")
    (work / "results.json").write_text(json.dumps(RESULTS))
    with pytest.MonkeyPatch.context() as monkeypatch:
        point_client_at(monkeypatch, server)
        pushes = {
            "dataset": push_dataset(dataset, DATASET_REPO),
            "model": push_model(sweep, MODEL_REPO, results=work / "results.json",
                                base_model="openai/clip-vit-base-patch32", datasets=[DATASET_REPO]),
            "metrics": push_metrics(NAMESPACE),
        }
    return {"sweep": sweep, "dataset": dataset, "work": work, "pushes": pushes}


@pytest.fixture(scope="module")
def loaded(server, published, tmp_path_factory):
    """What a fresh process without cf_hf observes when it loads everything from the server."""
    work = tmp_path_factory.mktemp("client")
    sweep = published["sweep"]
    spec = {
        "dataset": DATASET_REPO,
        "model": MODEL_REPO,
        "models": {"main": [None, str(sweep / "alpha-1")], "alpha-0.5": ["alpha-0.5", str(sweep / "alpha-0.5")],
                   "alpha-0": ["alpha-0", str(sweep / "alpha-0")]},
        "metric": f"{NAMESPACE}/ndkl",
    }
    return _run_client(server, spec, work)


def _run_client(server, spec: dict, work: Path) -> dict:
    """Run the client script on `spec` in a fresh process without cf_hf; what it observed."""
    (work / "spec.json").write_text(json.dumps(spec))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(HF_ENDPOINT=server.url, HF_HUB_DISABLE_XET="1", HF_HUB_OFFLINE="0", HF_DATASETS_OFFLINE="0",
               TRANSFORMERS_OFFLINE="0", HF_EVALUATE_OFFLINE="0", HF_HOME=str(work / "hf_home"),
               HF_HUB_DISABLE_TELEMETRY="1", PYTHONPATH="")
    completed = subprocess.run(
        [sys.executable, str(CLIENT_SCRIPT), str(work / "spec.json"), str(work / "out.json")],
        cwd=work, env=env, capture_output=True, text=True, timeout=240,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads((work / "out.json").read_text())


# ---- contract: what other projects rely on ---------------------------------------------------


def test_load_dataset_returns_the_schema_with_group_id(loaded):
    assert loaded["dataset_rows"] == 6
    features = loaded["dataset_features"]
    assert features["group_id"] == "Value" and features["image"] == "Image"
    assert features["concept"] == "ClassLabel" and loaded["dataset_concepts"] == ["doctor", "nurse"]
    assert loaded["dataset_first_image_size"] == [8, 8]
    assert loaded["dataset_group_ids"] == GROUP_IDS


def test_a_real_export_of_the_builder_loads_with_load_dataset_from_the_hub(
        server, world_counterfactual_dataset, tmp_path):
    """The builder's own output (world generation + `export_dataset`), pushed and loaded elsewhere."""
    import datasets

    with pytest.MonkeyPatch.context() as monkeypatch:
        point_client_at(monkeypatch, server)
        push_dataset(world_counterfactual_dataset, f"{NAMESPACE}/they-are-all-doctors-world")
    work = tmp_path / "client"
    work.mkdir()
    loaded = _run_client(server, {"dataset": f"{NAMESPACE}/they-are-all-doctors-world"}, work)
    exported = datasets.load_dataset(str(world_counterfactual_dataset), split="train")
    assert loaded["dataset_rows"] == len(exported) == loaded["streamed_rows"] > 0
    assert loaded["dataset_feature_types"] == {name: repr(feature) for name, feature in exported.features.items()}
    assert loaded["dataset_group_ids"] == list(exported["group_id"]) == loaded["streamed_group_ids"]
    assert loaded["dataset_captions"] == list(exported["caption"])
    assert loaded["dataset_concepts"] == exported.features["concept"].names
    assert not loaded["cf_hf_imported"]


def test_streaming_load_dataset_reads_the_same_rows(loaded):
    assert loaded["streamed_rows"] == 6
    assert loaded["streamed_group_ids"] == GROUP_IDS
    assert "group_id" in loaded["streamed_features"]


def test_clip_from_the_hub_gives_the_local_embeddings_on_main_and_each_branch(loaded):
    assert set(loaded["model_max_abs_diff"]) == {"main", "alpha-0.5", "alpha-0"}
    assert all(diff == 0.0 for diff in loaded["model_max_abs_diff"].values()), loaded["model_max_abs_diff"]


def test_evaluate_load_of_the_space_computes_the_known_ndkl(loaded):
    assert loaded["metric"]["ndkl"] == pytest.approx(0.693147, abs=1e-6)


def test_the_client_process_never_imported_cf_hf(loaded):
    assert loaded["cf_hf_imported"] is False


def test_the_clients_used_only_endpoints_the_server_implements(loaded, server):
    assert server.unknown == [] and server.errors == []


# ---- what a push makes on the Hub ---------------------------------------------------------------


def test_model_push_makes_one_branch_per_alpha_and_main_is_the_largest(published, client):
    from huggingface_hub import HfApi

    api = HfApi()
    branches = {ref.name for ref in api.list_repo_refs(MODEL_REPO).branches}
    assert branches == {"main", "alpha-0", "alpha-0.5", "alpha-1"}
    for branch in branches:  # initial commit + exactly one push commit per branch
        assert len(api.list_repo_commits(MODEL_REPO, revision=branch)) == 2
    card = Path(api.hf_hub_download(MODEL_REPO, "README.md", revision="alpha-0.5")).read_text()
    assert "**This checkpoint: α = 0.5.**" in card and 'revision="alpha-0.5"' in card
    assert "interpolation.json" not in api.list_repo_files(MODEL_REPO, revision="alpha-0.5")


def test_model_card_metadata_reaches_the_hub(published, client):
    from huggingface_hub import HfApi

    info = HfApi().model_info(MODEL_REPO, revision="alpha-0.5")
    assert info.card_data["pipeline_tag"] == "zero-shot-image-classification"
    assert info.card_data["datasets"] == [DATASET_REPO]
    values = {result.metric_name: result.metric_value for result in info.card_data.eval_results}
    assert values == {"MaxSkew (gender)": 0.3, "MinSkew (gender)": -0.2, "NDKL (gender)": 0.1,
                      "Zero-shot accuracy": 0.8}


@pytest.fixture(scope="module")
def evaluated(published, tiny_clip_dir, tmp_path_factory):
    """`cf-hf evaluate --sweep` of the published sweep (and its original) on tiny on-disk sets."""
    from testing_utils.evaluation import make_fairface, make_imagenet, make_karpathy

    from cf_hf.cli import main as cf_hf_main

    data = tmp_path_factory.mktemp("evaluation_data")
    make_fairface(data / "fairface", n=24)
    flickr = make_karpathy(data / "flickr")
    make_imagenet(data / "imagenet")
    output = data / "eval"
    assert cf_hf_main(["evaluate", "--sweep", str(published["sweep"]), "--model", f"original={tiny_clip_dir}",
                       "--fairface", str(data / "fairface"), "--flickr", str(flickr), "--imagenet", str(data / "imagenet"),
                       "--concepts", "doctor", "nurse", "--k", "12", "--no_progress", "--no_plots",
                       "--output_dir", str(output)]) == 0
    return output / "results.json"


def test_push_with_the_results_of_cf_hf_evaluate_puts_its_numbers_on_the_cards(published, evaluated, client):
    from huggingface_hub import HfApi

    repo = f"{NAMESPACE}/cf-clip-evaluated"
    assert push_main(["model", str(published["sweep"]), "--repo_id", repo, "--results", str(evaluated),
                      "--base_model", "openai/clip-vit-base-patch32"]) == 0
    measured = json.loads(evaluated.read_text())["models"]
    api = HfApi()
    for alpha in ("0", "0.5", "1"):
        numbers = measured[f"alpha={alpha}"]
        expected = {f"{label}@12 ({attribute})": numbers[attribute][metric]
                    for attribute in ("age", "gender", "race")
                    for metric, label in (("max_skew", "MaxSkew"), ("min_skew", "MinSkew"), ("ndkl", "NDKL"))}
        expected |= {"Zero-shot accuracy": numbers["zero_shot_accuracy"], "Recall@5": numbers["recall_at_5"]}
        card_data = api.model_info(repo, revision=f"alpha-{alpha}").card_data
        assert {result.metric_name: result.metric_value for result in card_data.eval_results} == expected
        card = Path(api.hf_hub_download(repo, "README.md", revision=f"alpha-{alpha}")).read_text()
        results_section = card.split("## Results")[1].split("## The α sweep")[0]
        assert f"| {numbers['gender']['max_skew']:.4g} |" in results_section
        assert "| original |" in card.split("## The α sweep")[1]


def test_push_refuses_results_that_hold_none_of_the_pushed_alphas(published, tmp_path, capsys):
    other = {"schema_version": 1, "models": {"cf": {"gender": {"max_skew": 0.2}}}}
    (tmp_path / "results.json").write_text(json.dumps(other))
    assert push_main(["model", str(published["sweep"]), "--repo_id", MODEL_REPO, "--results",
                      str(tmp_path / "results.json"), "--base_model", "b", "--dry_run"]) == 2
    error = capsys.readouterr().err
    assert "holds no numbers for any pushed α (0, 0.5, 1); its models are ['cf']" in error
    assert "cf-hf evaluate --sweep" in error


def test_push_names_the_alphas_its_results_lack(published, caplog):
    partial = {"schema_version": 1, "models": {"alpha=0.5": {"alpha": 0.5, "gender": {"max_skew": 0.3}}}}
    with caplog.at_level("WARNING", logger="hub_scripts.push_model"):
        push_model(published["sweep"], MODEL_REPO, results=partial, base_model="b", dry_run=True)
    assert "holds no numbers for α = 0, 1: their cards show none" in caplog.text


def test_push_refuses_the_flat_results_of_older_demos_with_what_to_rerun(published, tmp_path, capsys):
    (tmp_path / "results.json").write_text(json.dumps({"original": {}, "alpha=0.5": {}, "chosen_alpha": 0.5}))
    assert push_main(["model", str(published["sweep"]), "--repo_id", MODEL_REPO, "--results",
                      str(tmp_path / "results.json"), "--base_model", "b", "--dry_run"]) == 2
    assert "flat layout of older `cf-hf demo` runs" in capsys.readouterr().err


def test_metric_modules_are_gradio_spaces(published, client):
    from huggingface_hub import HfApi

    for name in ("max_skew", "min_skew", "ndkl"):
        files = set(HfApi().list_repo_files(f"{NAMESPACE}/{name}", repo_type="space"))
        assert {f"{name}.py", "fairness.py", "README.md", "app.py", "requirements.txt"} <= files


def test_repushing_unchanged_content_makes_no_commit(published, client):
    from huggingface_hub import HfApi

    api = HfApi()
    before = len(api.list_repo_commits(DATASET_REPO, repo_type="dataset"))
    (result,) = push_dataset(published["dataset"], DATASET_REPO)
    assert result.new_commit is False
    assert len(api.list_repo_commits(DATASET_REPO, repo_type="dataset")) == before
    results = push_model(published["sweep"], MODEL_REPO, results=published["work"] / "results.json",
                         base_model="openai/clip-vit-base-patch32", datasets=[DATASET_REPO])
    assert [r.new_commit for r in results] == [False] * 4


def test_a_changed_folder_is_one_commit_that_also_removes_stale_files(client, tmp_path):
    from huggingface_hub import HfApi

    api = HfApi()
    folder = build_dataset_folder(tmp_path / "dataset")
    (folder / "notes.txt").write_text("draft")
    push_dataset(folder, f"{NAMESPACE}/changing")
    (folder / "notes.txt").unlink()
    (folder / "README.md").write_text((folder / "README.md").read_text() + "\nMore details.\n")
    (extra,) = push_dataset(folder, f"{NAMESPACE}/changing")
    assert extra.new_commit is True
    commits = api.list_repo_commits(f"{NAMESPACE}/changing", repo_type="dataset")
    assert len(commits) == 3  # initial, first push, second push
    assert "notes.txt" not in api.list_repo_files(f"{NAMESPACE}/changing", repo_type="dataset")


def test_private_repos_are_invisible_without_the_token(client, tmp_path, monkeypatch):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    push_dataset(build_dataset_folder(tmp_path / "dataset"), f"{NAMESPACE}/secret", private=True)
    assert HfApi().dataset_info(f"{NAMESPACE}/secret").private is True
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=False).dataset_info(f"{NAMESPACE}/secret")


def test_dry_run_lists_the_files_and_sends_nothing(published, server, monkeypatch, capsys):
    point_client_at(monkeypatch, server, token=None)
    sent = len(server.requests)
    assert push_main(["model", str(published["sweep"]), "--repo_id", f"{NAMESPACE}/dry",
                      "--base_model", "openai/clip-vit-base-patch32", "--dry_run"]) == 0
    assert push_main(["metrics", "--namespace", NAMESPACE, "--names", "ndkl", "--dry_run", "--private"]) == 0
    out = capsys.readouterr().out
    assert f"{NAMESPACE}/dry @ alpha-0.5" in out and "model.safetensors" in out and "README.md" in out
    assert f"[dry run, private] would upload to space {NAMESPACE}/ndkl @ main" in out
    assert len(server.requests) == sent


def test_cf_hf_push_dispatches_to_the_hub_scripts(published, server, monkeypatch, capsys):
    from cf_hf.cli import main as cf_hf_main

    point_client_at(monkeypatch, server, token=None)
    assert cf_hf_main(["push", "dataset", str(published["dataset"]), "--repo_id", DATASET_REPO, "--dry_run"]) == 0
    assert "data/train-00000-of-00001.parquet" in capsys.readouterr().out


# ---- bad input: each a clear error -------------------------------------------------------------


def test_pushing_a_folder_that_is_not_a_checkpoint_fails_clearly(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(HubPushError, match="not a model checkpoint: it has no config.json"):
        push_model(tmp_path, MODEL_REPO, base_model="b", dry_run=True)
    assert push_main(["model", str(tmp_path), "--repo_id", MODEL_REPO, "--base_model", "b", "--dry_run"]) == 2
    assert "not a model checkpoint" in capsys.readouterr().err


def test_a_checkpoint_without_weights_is_refused(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "clip"}')
    with pytest.raises(HubPushError, match="no weights"):
        push_model(tmp_path, MODEL_REPO, base_model="b", dry_run=True)


def test_a_sweep_listing_an_alpha_twice_is_refused(published, tmp_path):
    import shutil

    sweep = shutil.copytree(published["sweep"], tmp_path / "sweep")
    manifest = json.loads((sweep / "sweep.json").read_text())
    manifest["alphas"].append({"alpha": 0.5, "path": "alpha-0.5"})
    (sweep / "sweep.json").write_text(json.dumps(manifest))
    with pytest.raises(HubPushError, match="lists an alpha twice"):
        push_model(sweep, MODEL_REPO, base_model="b", dry_run=True)


def test_a_dataset_without_group_id_is_refused(tmp_path):
    folder = build_dataset_folder(tmp_path / "dataset", with_group_id=False)
    with pytest.raises(HubPushError, match=r"lacks the column\(s\) \['group_id'\]"):
        push_dataset(folder, DATASET_REPO, dry_run=True)


def test_a_dataset_folder_without_card_or_shards_is_refused(tmp_path):
    with pytest.raises(HubPushError, match="no README.md dataset card"):
        push_dataset(tmp_path, DATASET_REPO, dry_run=True)
    (tmp_path / "README.md").write_text("---\n---\n")
    with pytest.raises(HubPushError, match="no parquet shards"):
        push_dataset(tmp_path, DATASET_REPO, dry_run=True)


def test_a_missing_token_is_a_clear_error(published, server, monkeypatch):
    point_client_at(monkeypatch, server, token=None)
    with pytest.raises(HubPushError, match="no Hugging Face token found: set the HF_TOKEN"):
        push_dataset(published["dataset"], DATASET_REPO)


def test_a_wrong_token_is_rejected_without_being_shown(published, server, monkeypatch, capsys):
    wrong = "hf_wrong_token_value"
    point_client_at(monkeypatch, server, token=wrong)
    with pytest.raises(HubPushError, match="rejected the token \\(HTTP 401\\)") as error:
        push_dataset(published["dataset"], DATASET_REPO)
    captured = capsys.readouterr()
    assert wrong not in str(error.value) and wrong not in captured.out + captured.err


def test_bad_repo_ids_and_unknown_metrics_are_refused(published):
    with pytest.raises(HubPushError, match="must be 'namespace/name'"):
        push_dataset(published["dataset"], "no-namespace", dry_run=True)
    with pytest.raises(HubPushError, match="unknown metric module"):
        push_metrics(NAMESPACE, ["accuracy"], dry_run=True)
    with pytest.raises(HubPushError, match="--default_alpha 0.3 is not one of"):
        push_model(published["sweep"], MODEL_REPO, base_model="b", default_alpha=0.3, dry_run=True)


# ---- the server answers the way the Hub does -------------------------------------------------


def _http(url: str, method: str = "GET", headers: dict | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_server_answers_missing_things_with_404_and_the_hub_error_codes(published, server):
    base = server.url
    cases = {
        f"{base}/{MODEL_REPO}/resolve/main/missing.bin": "EntryNotFound",
        f"{base}/{NAMESPACE}/nothing/resolve/main/config.json": "RepoNotFound",
        f"{base}/{MODEL_REPO}/resolve/no-branch/config.json": "RevisionNotFound",
    }
    for url, code in cases.items():
        status, headers, _ = _http(url, "HEAD")
        assert (status, headers.get("X-Error-Code")) == (404, code), url


def test_server_serves_byte_ranges(published, server):
    url = server.resolve_url("model", MODEL_REPO, "alpha-0.5", "config.json")
    _, _, whole = _http(url)
    status, headers, part = _http(url, headers={"Range": "bytes=2-9"})
    assert status == 206 and part == whole[2:10]
    assert headers["Content-Range"] == f"bytes 2-9/{len(whole)}"
    assert _http(url, headers={"Range": "bytes=-4"})[2] == whole[-4:]

