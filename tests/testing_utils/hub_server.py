"""A small Hugging Face Hub-protocol server for the contract tests (standard library only).

The real clients (`huggingface_hub`, `transformers`, `datasets`, `evaluate`) talk to it through
`HF_ENDPOINT=http://127.0.0.1:<port>` with `HF_HUB_DISABLE_XET=1`, so pushing and loading are tested
through the same HTTP calls they make against huggingface.co. It implements only what those
clients use (checked against the `huggingface_hub` 2.x source), the way the Hub answers:

- `GET  /api/whoami-v2`; `POST /api/repos/create` (409 + url when it exists); `POST /api/validate-yaml`
- `GET  /api/{type}s/{repo}` and `/revision/{rev}` (info with `sha` and `siblings`)
- `GET  /api/{type}s/{repo}/tree/{rev}/{path}` (`recursive`), `POST .../paths-info/{rev}`
- `GET  /api/{type}s/{repo}/refs`, `/commits/{rev}`; `POST .../branch/{name}` (409 when it exists)
- `POST /api/{type}s/{repo}/preupload/{rev}` (upload mode and remote oid of each file) and the
  NDJSON `POST .../commit/{rev}` (`file`, `lfsFile`, `deletedFile`, `deletedFolder`, `parentCommit`)
- `POST /{prefix}{repo}.git/info/lfs/objects/batch` + `PUT /_lfs/{sha256}` (basic LFS transfer)
- `GET|HEAD /{prefix}{repo}/resolve/{rev}/{path}` with `X-Repo-Commit`, `ETag`, `X-Linked-Etag`,
  `X-Linked-Size` and `Range` (206) support

where `{type}` is model/dataset/space and `{prefix}` is ``, `datasets/` or `spaces/`. Missing things
are 404s with the Hub's `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`), never
401. With `token` set, writes (and reading private repos) need `Authorization: Bearer <token>`.

Storage is plain files under `root`: `blobs/<sha256>` holds every file content once, and each repo
folder `{type}s/{namespace}/{name}/` holds `repo.json` (branches → commit id, visibility) and
`commits/<id>.json` (parent, message, date, and the full tree: path → sha256, size, LFS or not).
Commits are immutable, so revisions, branches and history work as on the Hub. Like the Hub, the
server records every commit it is sent, even an empty one: "no new commit on unchanged content" is
the client's job (it compares the oids that preupload returns).

Run by hand: `python tests/testing_utils/hub_server.py --root /tmp/hub --port 8000 [--token T]`.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

REPO_TYPES = ("model", "dataset", "space")
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
DEFAULT_BRANCH = "main"
USER_NAME = "cf-hf-tester"
# Files the Hub stores with LFS: its default `.gitattributes` patterns (by suffix), anything binary,
# and anything over 10 MB.
LFS_SUFFIXES = (
    ".7z .arrow .bin .bz2 .ckpt .ftz .gz .h5 .joblib .mlmodel .model .msgpack .npy .npz .onnx .ot"
    " .parquet .pb .pickle .pkl .pt .pth .rar .safetensors .tar .tflite .tgz .wasm .xz .zip .zst"
    " .png .jpg .jpeg .webp .gif .mp3 .wav .flac .ogg .mp4"
).split()
LFS_MIN_SIZE = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n" for suffix in LFS_SUFFIXES)
_COMMIT_ID = re.compile(r"^[0-9a-f]{40}$")


def git_blob_oid(content: bytes) -> str:
    """The git object id of a blob (what the Hub reports as `oid` for a regular file)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def wants_lfs(path: str, size: int, sample: bytes) -> bool:
    return size >= LFS_MIN_SIZE or path.lower().endswith(tuple(LFS_SUFFIXES)) or b"\0" in sample


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class HubError(Exception):
    """An HTTP error answered the Hub's way: status, `X-Error-Code`, `X-Error-Message`, JSON body."""

    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.commit = status, message, code, commit


@dataclass
class HubStore:
    """Repos as folders of JSON commits over a content-addressed blob folder (see module docstring)."""

    root: Path
    lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self):
        self.root = Path(self.root)
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)

    # -- blobs
    def put_blob(self, content: bytes) -> str:
        sha256 = hashlib.sha256(content).hexdigest()
        path = self.root / "blobs" / sha256
        if not path.exists():
            tmp = path.with_suffix(f".tmp{threading.get_ident()}")
            tmp.write_bytes(content)
            tmp.replace(path)
        return sha256

    def has_blob(self, sha256: str) -> bool:
        return (self.root / "blobs" / sha256).is_file()

    def blob(self, sha256: str) -> bytes:
        return (self.root / "blobs" / sha256).read_bytes()

    # -- repos
    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        return self.root / f"{repo_type}s" / repo_id

    def repo(self, repo_type: str, repo_id: str) -> dict:
        path = self.repo_dir(repo_type, repo_id) / "repo.json"
        if not path.is_file():
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return json.loads(path.read_text())

    def save_repo(self, repo_type: str, repo_id: str, repo: dict) -> None:
        (self.repo_dir(repo_type, repo_id) / "repo.json").write_text(json.dumps(repo, indent=1))

    def create_repo(self, repo_type: str, repo_id: str, private: bool, extra: dict) -> bool:
        """Create the repo with an initial commit holding `.gitattributes`. False if it exists."""
        with self.lock:
            folder = self.repo_dir(repo_type, repo_id)
            if (folder / "repo.json").is_file():
                return False
            (folder / "commits").mkdir(parents=True, exist_ok=True)
            repo = {"private": private, "createdAt": _now(), "refs": {}, **extra}
            self.save_repo(repo_type, repo_id, repo)
            content = GITATTRIBUTES.encode()
            entry = {"sha256": self.put_blob(content), "size": len(content), "lfs": False,
                     "oid": git_blob_oid(content)}
            self.write_commit(repo_type, repo_id, DEFAULT_BRANCH, {".gitattributes": entry},
                              "initial commit", "", parent=None)
            return True

    def commit(self, repo_type: str, repo_id: str, commit_id: str) -> dict:
        path = self.repo_dir(repo_type, repo_id) / "commits" / f"{commit_id}.json"
        return json.loads(path.read_text())

    def resolve_revision(self, repo_type: str, repo_id: str, revision: str) -> dict:
        """The commit a branch name or commit id points at (404 RevisionNotFound otherwise)."""
        repo = self.repo(repo_type, repo_id)
        revision = revision.removeprefix("refs/heads/")
        commit_id = repo["refs"].get(revision)
        if commit_id is None and _COMMIT_ID.match(revision):
            if (self.repo_dir(repo_type, repo_id) / "commits" / f"{revision}.json").is_file():
                commit_id = revision
        if commit_id is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return self.commit(repo_type, repo_id, commit_id)

    def write_commit(self, repo_type, repo_id, branch, tree, title, description, parent) -> str:
        with self.lock:
            date = _now()
            payload = json.dumps([parent, sorted(tree.items()), title, description, date]).encode()
            commit_id = hashlib.sha1(payload).hexdigest()
            commit = {"id": commit_id, "parent": parent, "title": title, "message": description,
                      "date": date, "tree": tree}
            folder = self.repo_dir(repo_type, repo_id)
            (folder / "commits" / f"{commit_id}.json").write_text(json.dumps(commit, indent=1))
            repo = self.repo(repo_type, repo_id)
            repo["refs"][branch] = commit_id
            self.save_repo(repo_type, repo_id, repo)
            return commit_id

    def history(self, repo_type: str, repo_id: str, revision: str) -> list[dict]:
        commit = self.resolve_revision(repo_type, repo_id, revision)
        commits = [commit]
        while commit["parent"] is not None:
            commit = self.commit(repo_type, repo_id, commit["parent"])
            commits.append(commit)
        return commits


def _entry_json(path: str, entry: dict) -> dict:
    """A tree/paths-info item for a file, as the Hub lists it."""
    item = {"type": "file", "path": path, "size": entry["size"], "oid": entry["oid"]}
    if entry["lfs"]:
        pointer = lfs_pointer(entry["sha256"], entry["size"])
        item["oid"] = git_blob_oid(pointer)
        item["lfs"] = {"oid": entry["sha256"], "size": entry["size"], "pointerSize": len(pointer)}
    return item


def _folder_json(path: str, tree: dict) -> dict:
    inside = sorted((p, e["sha256"]) for p, e in tree.items() if p.startswith(path + "/"))
    return {"type": "directory", "path": path, "oid": hashlib.sha1(json.dumps(inside).encode()).hexdigest()}


def _folders(tree: dict) -> set[str]:
    return {"/".join(p.split("/")[:i]) for p in tree for i in range(1, p.count("/") + 1)}


def _card_data(tree: dict, store: HubStore) -> dict | None:
    """The README's YAML header, as the Hub returns it in `cardData`."""
    entry = tree.get("README.md")
    if entry is None:
        return None
    match = re.match(r"^---\s*\n(.*?)\n---\s*\n", store.blob(entry["sha256"]).decode("utf-8", "replace"), re.S)
    if not match:
        return None
    try:
        import yaml

        data = yaml.safe_load(match.group(1))
    except Exception:
        return None
    return data if isinstance(data, dict) else None


class HubHandler(BaseHTTPRequestHandler):
    """Routes each request to a `_route_*` method; errors become Hub-style error responses."""

    protocol_version = "HTTP/1.1"
    server: HubServer

    # -- plumbing
    def log_message(self, format, *args):  # quiet; requests are recorded in `server.requests`
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, payload, status: int = 200, headers: dict | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers)

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        self.query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        self.segments = [unquote(part) for part in url.path.strip("/").split("/")]
        self.body = self._read_body()
        status = 500
        try:
            status = self._route()
        except HubError as error:
            status = error.status
            headers = {"X-Error-Message": error.message}
            if error.code:
                headers["X-Error-Code"] = error.code
            if error.commit:
                headers["X-Repo-Commit"] = error.commit
            self._json({"error": error.message}, error.status, headers)
        except Exception as error:  # a server bug: answer 500 and remember it for the tests
            self.server.errors.append(f"{self.command} {self.path}: {error!r}")
            self._json({"error": repr(error)}, 500)
        self.server.requests.append((self.command, self.path, status))

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    # -- auth
    def _token(self) -> str | None:
        value = self.headers.get("Authorization", "")
        return value[len("Bearer "):].strip() if value.startswith("Bearer ") else None

    def _authenticated(self) -> bool:
        token = self._token()
        return token is not None and (self.server.token is None or token == self.server.token)

    def _require_write(self) -> None:
        if self.server.token is not None and not self._authenticated():
            raise HubError(401, "Invalid credentials in Authorization header")

    def _readable_repo(self, repo_type: str, repo_id: str) -> dict:
        repo = self.server.store.repo(repo_type, repo_id)
        if repo["private"] and self.server.token is not None and not self._authenticated():
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    # -- routing
    def _route(self) -> int:
        seg, method = self.segments, self.command
        if seg[:2] == ["api", "whoami-v2"] and method == "GET":
            return self._whoami()
        if seg[:3] == ["api", "repos", "create"] and method == "POST":
            return self._create_repo()
        if seg[:2] == ["api", "agent-harnesses"] and method == "GET":  # client telemetry: empty registry
            self._json({"standardEnvVars": [], "harnesses": {}})
            return 200
        if seg[:2] == ["api", "validate-yaml"] and method == "POST":
            return self._validate_yaml()
        if seg[0] == "_lfs" and len(seg) == 2 and method == "PUT":
            return self._lfs_put(seg[1])
        if seg[0] == "api" and len(seg) >= 4 and seg[1].rstrip("s") in REPO_TYPES and seg[1].endswith("s"):
            return self._repo_api(seg[1][:-1], f"{seg[2]}/{seg[3]}", seg[4:])
        repo_type, rest = "model", seg
        if seg[0] in ("datasets", "spaces"):
            repo_type, rest = seg[0][:-1], seg[1:]
        if len(rest) >= 2 and rest[1].endswith(".git") and rest[2:] == ["info", "lfs", "objects", "batch"]:
            return self._lfs_batch(repo_type, f"{rest[0]}/{rest[1][:-4]}")
        if len(rest) >= 5 and rest[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(repo_type, f"{rest[0]}/{rest[1]}", rest[3], "/".join(rest[4:]))
        self.server.unknown.append(f"{method} {self.path}")
        raise HubError(404, f"Unknown endpoint {method} {self.path}")

    def _repo_api(self, repo_type: str, repo_id: str, rest: list[str]) -> int:
        method = self.command
        if method == "GET" and not rest:
            return self._info(repo_type, repo_id, DEFAULT_BRANCH)
        action = rest[0]
        if method == "GET" and action == "revision" and len(rest) >= 2:
            return self._info(repo_type, repo_id, "/".join(rest[1:]))
        if method == "GET" and action == "tree" and len(rest) >= 2:
            return self._tree(repo_type, repo_id, rest[1], "/".join(rest[2:]))
        if method == "POST" and action == "paths-info" and len(rest) == 2:
            return self._paths_info(repo_type, repo_id, rest[1])
        if method == "GET" and action == "refs":
            return self._refs(repo_type, repo_id)
        if method == "GET" and action == "commits" and len(rest) == 2:
            return self._commits(repo_type, repo_id, rest[1])
        if method == "POST" and action == "branch" and len(rest) >= 2:
            return self._create_branch(repo_type, repo_id, "/".join(rest[1:]))
        if method == "POST" and action == "preupload" and len(rest) == 2:
            return self._preupload(repo_type, repo_id, rest[1])
        if method == "POST" and action == "commit" and len(rest) == 2:
            return self._commit(repo_type, repo_id, rest[1])
        self.server.unknown.append(f"{method} {self.path}")
        raise HubError(404, f"Unknown endpoint {method} {self.path}")

    # -- endpoints
    def _whoami(self) -> int:
        if not self._authenticated():
            raise HubError(401, "Invalid credentials in Authorization header")
        self._json({"type": "user", "name": USER_NAME, "fullname": "cf_hf test user", "orgs": [],
                    "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}}})
        return 200

    def _create_repo(self) -> int:
        self._require_write()
        payload = json.loads(self.body or b"{}")
        repo_type = payload.get("type") or "model"
        namespace = payload.get("organization") or USER_NAME
        repo_id = f"{namespace}/{payload['name']}"
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        extra = {"sdk": payload.get("sdk")} if repo_type == "space" else {}
        url = f"{self.server.url}/{URL_PREFIXES[repo_type]}{repo_id}"
        if not self.server.store.create_repo(repo_type, repo_id, private, extra):
            self._json({"error": "You already created this repo", "url": url}, 409)
            return 409
        self._json({"url": url, "name": repo_id})
        return 200

    def _validate_yaml(self) -> int:
        import yaml

        content = json.loads(self.body or b"{}").get("content", "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*\n", content, re.S)
        try:
            if match:
                yaml.safe_load(match.group(1))
        except yaml.YAMLError as error:
            self._json({"errors": [{"message": f"Invalid YAML: {error}"}], "warnings": []}, 400)
            return 400
        self._json({"errors": [], "warnings": []})
        return 200

    def _info(self, repo_type: str, repo_id: str, revision: str) -> int:
        repo = self._readable_repo(repo_type, repo_id)
        commit = self.server.store.resolve_revision(repo_type, repo_id, revision)
        siblings = []
        for path, entry in sorted(commit["tree"].items()):
            sibling = {"rfilename": path}
            if self.query.get("blobs") in ("True", "true", "1"):
                item = _entry_json(path, entry)
                sibling.update(size=entry["size"], blobId=item["oid"])
                if "lfs" in item:
                    sibling["lfs"] = {"sha256": entry["sha256"], "size": entry["size"],
                                      "pointerSize": item["lfs"]["pointerSize"]}
            siblings.append(sibling)
        card_data = _card_data(commit["tree"], self.server.store)
        info = {"_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24], "id": repo_id,
                "author": repo_id.split("/")[0], "sha": commit["id"], "lastModified": commit["date"],
                "createdAt": repo["createdAt"], "private": repo["private"], "gated": False,
                "disabled": False, "downloads": 0, "likes": 0, "tags": [], "siblings": siblings}
        if card_data is not None:
            info["cardData"] = card_data
        if repo_type == "model":
            info["modelId"] = repo_id
            info.update({key: card_data[key] for key in ("library_name", "pipeline_tag")
                         if card_data and key in card_data})
        if repo_type == "space":
            info.update(sdk=repo.get("sdk"), runtime={"stage": "RUNNING"})
        self._json(info)
        return 200

    def _tree(self, repo_type: str, repo_id: str, revision: str, path: str) -> int:
        self._readable_repo(repo_type, repo_id)
        commit = self.server.store.resolve_revision(repo_type, repo_id, revision)
        tree, path = commit["tree"], path.strip("/")
        folders = _folders(tree)
        if path and path not in folders:
            raise HubError(404, f"{path} does not exist on {revision}", "EntryNotFound", commit["id"])
        prefix = f"{path}/" if path else ""
        recursive = self.query.get("recursive") in ("True", "true", "1")

        def listed(item_path: str) -> bool:
            return item_path.startswith(prefix) and (recursive or "/" not in item_path[len(prefix):])

        items = [_folder_json(f, tree) for f in sorted(folders) if listed(f)]
        items += [_entry_json(p, e) for p, e in sorted(tree.items()) if listed(p)]
        self._json(items)
        return 200

    def _paths_info(self, repo_type: str, repo_id: str, revision: str) -> int:
        self._readable_repo(repo_type, repo_id)
        commit = self.server.store.resolve_revision(repo_type, repo_id, revision)
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("application/json"):
            paths = json.loads(self.body).get("paths", [])
        else:
            paths = parse_qs(self.body.decode()).get("paths", [])
        tree, folders = commit["tree"], _folders(commit["tree"])
        items = []
        for path in paths:
            path = path.strip("/")
            if path in tree:
                items.append(_entry_json(path, tree[path]))
            elif path in folders:
                items.append(_folder_json(path, tree))
        self._json(items)
        return 200

    def _refs(self, repo_type: str, repo_id: str) -> int:
        repo = self._readable_repo(repo_type, repo_id)
        branches = [{"name": name, "ref": f"refs/heads/{name}", "targetCommit": commit}
                    for name, commit in sorted(repo["refs"].items())]
        self._json({"branches": branches, "converts": [], "tags": [], "pullRequests": []})
        return 200

    def _commits(self, repo_type: str, repo_id: str, revision: str) -> int:
        self._readable_repo(repo_type, repo_id)
        history = self.server.store.history(repo_type, repo_id, revision)
        self._json([{"id": c["id"], "title": c["title"], "message": c["message"], "date": c["date"],
                     "authors": [{"user": USER_NAME}]} for c in history])
        return 200

    def _create_branch(self, repo_type: str, repo_id: str, branch: str) -> int:
        self._require_write()
        store = self.server.store
        with store.lock:
            repo = store.repo(repo_type, repo_id)
            if branch in repo["refs"]:
                raise HubError(409, f"Reference already exists: refs/heads/{branch}")
            payload = json.loads(self.body or b"{}")
            start = store.resolve_revision(repo_type, repo_id, payload.get("startingPoint") or DEFAULT_BRANCH)
            repo["refs"][branch] = start["id"]
            store.save_repo(repo_type, repo_id, repo)
        self._json({})
        return 200

    def _preupload(self, repo_type: str, repo_id: str, revision: str) -> int:
        self._require_write()
        self.server.store.repo(repo_type, repo_id)
        tree = self.server.store.resolve_revision(repo_type, repo_id, revision)["tree"]
        files = []
        for file in json.loads(self.body)["files"]:
            path, size = file["path"], int(file["size"])
            mode = "lfs" if wants_lfs(path, size, base64.b64decode(file.get("sample", ""))) else "regular"
            remote = tree.get(path)
            oid = None
            if remote is not None:
                oid = remote["sha256"] if mode == "lfs" else remote["oid"]
            files.append({"path": path, "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        self._json({"files": files, "commitOid": None})
        return 200

    def _commit(self, repo_type: str, repo_id: str, revision: str) -> int:
        self._require_write()
        if self.query.get("create_pr"):
            raise HubError(400, "This test server does not implement pull requests")
        store = self.server.store
        lines = [json.loads(line) for line in self.body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The first line of a commit must be its header")
        header = lines[0]["value"]
        with store.lock:
            store.repo(repo_type, repo_id)
            parent = store.resolve_revision(repo_type, repo_id, revision)
            if header.get("parentCommit") and header["parentCommit"] != parent["id"]:
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            tree = dict(parent["tree"])
            for line in lines[1:]:
                key, value = line["key"], line["value"]
                path = value["path"].strip("/")
                if key == "file":
                    content = base64.b64decode(value["content"])
                    tree[path] = {"sha256": store.put_blob(content), "size": len(content), "lfs": False,
                                  "oid": git_blob_oid(content)}
                elif key == "lfsFile":
                    if not store.has_blob(value["oid"]):
                        raise HubError(422, f"LFS object {value['oid']} of {path} was never uploaded")
                    tree[path] = {"sha256": value["oid"], "size": int(value["size"]), "lfs": True,
                                  "oid": git_blob_oid(lfs_pointer(value["oid"], int(value["size"])))}
                elif key == "deletedFile":
                    if path not in tree:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                    del tree[path]
                elif key == "deletedFolder":
                    tree = {p: e for p, e in tree.items() if not p.startswith(path + "/")}
                else:
                    raise HubError(400, f"Unsupported commit operation {key!r}")
            branch = revision.removeprefix("refs/heads/")
            if branch not in store.repo(repo_type, repo_id)["refs"]:
                raise HubError(400, f"Commits go to a branch, not to {revision}")
            commit_id = store.write_commit(repo_type, repo_id, branch, tree, header.get("summary", ""),
                                           header.get("description", ""), parent["id"])
        url = f"{self.server.url}/{URL_PREFIXES[repo_type]}{repo_id}/commit/{commit_id}"
        self._json({"success": True, "commitOid": commit_id, "commitUrl": url, "hookOutput": ""})
        return 200

    def _lfs_batch(self, repo_type: str, repo_id: str) -> int:
        self._require_write()
        self.server.store.repo(repo_type, repo_id)
        payload = json.loads(self.body)
        if payload.get("operation") != "upload":
            raise HubError(400, "Only LFS uploads are implemented (downloads go through resolve)")
        objects = []
        for obj in payload["objects"]:
            item = {"oid": obj["oid"], "size": obj["size"]}
            if not self.server.store.has_blob(obj["oid"]):
                item["actions"] = {"upload": {"href": f"{self.server.url}/_lfs/{obj['oid']}", "header": {}}}
            objects.append(item)
        self._send(200, json.dumps({"transfer": "basic", "objects": objects}).encode(),
                   content_type="application/vnd.git-lfs+json")
        return 200

    def _lfs_put(self, sha256: str) -> int:
        if hashlib.sha256(self.body).hexdigest() != sha256:
            raise HubError(400, "Uploaded content does not match its sha256")
        self.server.store.put_blob(self.body)
        self._send(200, b"")
        return 200

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> int:
        self._readable_repo(repo_type, repo_id)
        commit = self.server.store.resolve_revision(repo_type, repo_id, revision)
        entry = commit["tree"].get(path)
        if entry is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", commit["id"])
        content = self.server.store.blob(entry["sha256"])
        headers = {"X-Repo-Commit": commit["id"], "Accept-Ranges": "bytes",
                   "ETag": f'"{entry["sha256"] if entry["lfs"] else entry["oid"]}"'}
        if entry["lfs"]:
            headers.update({"X-Linked-Etag": f'"{entry["sha256"]}"', "X-Linked-Size": str(entry["size"])})
        status, body = 200, content
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
        if match:
            size = len(content)
            start, end = match.groups()
            if start == "":
                start, end = max(size - int(end or 0), 0), size - 1
            else:
                start, end = int(start), min(int(end) if end else size - 1, size - 1)
            if start >= size or start > end:
                self._send(416, b"", {"Content-Range": f"bytes */{size}", **headers})
                return 416
            status, body = 206, content[start:end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        self._send(status, body, headers, content_type="application/octet-stream")
        return status


class HubServer(ThreadingHTTPServer):
    """The server object; `url` is its endpoint, `requests`/`unknown`/`errors` record traffic."""

    daemon_threads = True

    def __init__(self, root: str | Path, host: str = "127.0.0.1", port: int = 0, token: str | None = None):
        super().__init__((host, port), HubHandler)
        self.store = HubStore(Path(root))
        self.token = token
        self.url = f"http://{host}:{self.server_address[1]}"
        self.requests: list[tuple[str, str, int]] = []
        self.unknown: list[str] = []
        self.errors: list[str] = []
        self._thread: threading.Thread | None = None

    def start(self) -> HubServer:
        self._thread = threading.Thread(target=self.serve_forever, name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def resolve_url(self, repo_type: str, repo_id: str, revision: str, path: str) -> str:
        return f"{self.url}/{URL_PREFIXES[repo_type]}{repo_id}/resolve/{quote(revision, safe='')}/{path}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="folder holding the repos")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--token", default=None, help="token required for writes (default: any)")
    args = parser.parse_args(argv)
    server = HubServer(args.root, args.host, args.port, args.token)
    print(f"Hub-protocol server on {server.url} (HF_ENDPOINT={server.url} HF_HUB_DISABLE_XET=1)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.server_close()


if __name__ == "__main__":
    main()
