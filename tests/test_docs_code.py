"""Every code block of README.md and docs/*.md runs, on tiny models, or says why it cannot.

A fenced `python` block is executed, a `bash`/`sh` block is run by bash, in a sandbox folder where
the Hub ids and data paths the docs use exist as local stand-ins (`openai/clip-vit-base-patch32` is a
folder holding the tests' tiny CLIP, `data/fairface` a tiny FairFace, ...): the block runs as written,
and only the sizes that would make it slow are scaled down (`SCALED_DOWN`). A block that needs what a
test cannot have (the Hub, a GPU, real data, minutes of CPU, writing into the repository) is preceded
by a marker with its reason:

    <!-- docs-test: skip (needs a GPU and the Hub) -->

A README block that is a copy of a docs block, character for character, is covered by the docs block.
The API page must render every public name of `cf_hf` (mkdocstrings skips what it cannot resolve
without a warning, so `mkdocs build --strict` alone would not notice).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from testing_utils.evaluation import make_fairface
from testing_utils.training import make_counterfactual_dataset

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON_LANGUAGES = {"python", "py"}
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
FENCE = re.compile(r"^```\s*(?P<language>[\w+-]*)\s*$")
MARKER_START = "<!-- docs-test"
MARKER = re.compile(r"^<!-- docs-test: skip \((?P<reason>.*\S.*)\) -->$")
# Sizes that make a block slow, and what the sandbox runs instead (a block that names one gets it).
SCALED_DOWN = {
    "per_device_train_batch_size=64": "per_device_train_batch_size=8, max_steps=2, report_to=[], disable_tqdm=True",
}
# The default fairness k is 1000: the stand-in FairFace must hold more people than that.
FAIRFACE_STAND_IN_PEOPLE = 1008
SHELL_TIMEOUT_S = 300
# Blocks that take over 10 s here (2 shared CPU cores) are marked slow: what makes them slow.
SLOW_WHEN = {
    "data/fairface": "the FairFace stand-in: 1,008 people embedded by every model",
    "cf-hf interpolate": "a fresh process importing torch and writing a checkpoint per alpha",
}


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


@dataclass(frozen=True)
class CodeBlock:
    """One fenced code block of a document."""

    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    skip_reason: str | None

    @property
    def name(self) -> str:
        return f"{_shown(self.path)}:{self.line}"


def parse_blocks(path: Path) -> list[CodeBlock]:
    """The fenced blocks of `path` with their skip markers; a malformed or dangling marker is an error."""
    blocks, lines = [], path.read_text(encoding="utf-8").splitlines()
    pending_marker: tuple[int, str] | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        where = f"{_shown(path)}:{index + 1}"
        if line.startswith(MARKER_START):
            match = MARKER.match(line.strip())
            if not match:
                raise ValueError(f"{where}: a docs-test marker must read '<!-- docs-test: skip (REASON) -->' "
                                 f"with a reason, got {line.strip()!r}")
            pending_marker = (index + 1, match.group("reason").strip())
        elif fence := FENCE.match(line):
            closing = next((j for j in range(index + 1, len(lines)) if lines[j].rstrip() == "```"), None)
            if closing is None:
                raise ValueError(f"{where}: a code fence that is never closed")
            blocks.append(CodeBlock(path, index + 1, fence.group("language").lower(),
                                    "\n".join(lines[index + 1 : closing]) + "\n",
                                    pending_marker[1] if pending_marker else None))
            pending_marker, index = None, closing
        elif line.strip() and pending_marker is not None:
            raise ValueError(f"{_shown(path)}:{pending_marker[0]}: a docs-test marker must come right "
                             "before a code block (blank lines allowed)")
        index += 1
    if pending_marker is not None:
        raise ValueError(f"{_shown(path)}:{pending_marker[0]}: a docs-test marker with no code block after it")
    return blocks


def checked_blocks() -> list[CodeBlock]:
    """The python and shell blocks the test is responsible for: every one of docs/, and README's that are
    not copies of a docs block."""
    blocks = [block for path in DOCUMENTS for block in parse_blocks(path)
              if block.language in PYTHON_LANGUAGES | SHELL_LANGUAGES]
    in_docs = {block.code for block in blocks if block.path.parent == ROOT / "docs"}
    return [block for block in blocks if block.path.parent == ROOT / "docs" or block.code not in in_docs]


def _runnable(languages: set[str]) -> list:
    return [pytest.param(block, id=block.name,
                         marks=[pytest.mark.slow] if any(cause in block.code for cause in SLOW_WHEN) else [])
            for block in checked_blocks() if block.language in languages and block.skip_reason is None]


def test_parse_blocks_reads_markers_and_refuses_malformed_ones(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n<!-- docs-test: skip (needs the Hub) -->\n\n```bash\ncf-hf push\n```\n"
                    "```python\nprint(1)\n```\n```\nplain\n```\n")
    blocks = parse_blocks(page)
    assert [(b.language, b.code, b.skip_reason) for b in blocks] == [
        ("bash", "cf-hf push\n", "needs the Hub"), ("python", "print(1)\n", None), ("", "plain\n", None)]
    for text, problem in [("<!-- docs-test: skip () -->\n```bash\nx\n```\n", "with a reason"),
                          ("<!-- docs-test: skip (why) -->\nprose\n```bash\nx\n```\n", "right before a code block"),
                          ("<!-- docs-test: skip (why) -->\n", "no code block after it"),
                          ("```bash\nx\n", "never closed")]:
        page.write_text(text)
        with pytest.raises(ValueError, match=re.escape(problem)):
            parse_blocks(page)


def test_every_document_parses_and_some_blocks_run():
    blocks = checked_blocks()
    runnable = [block for block in blocks if block.skip_reason is None]
    assert any(b.language in PYTHON_LANGUAGES for b in runnable), "no python block runs: this test checks nothing"
    assert any(b.language in SHELL_LANGUAGES for b in runnable), "no shell block runs: this test checks nothing"


@pytest.fixture
def sandbox(tmp_path, tiny_clip_dir, monkeypatch):
    """A folder where the Hub ids and data paths of the docs exist as tiny local stand-ins."""

    def prepare(code: str) -> Path:
        stand_ins = {
            "openai/clip-vit-base-patch32": lambda path: shutil.copytree(tiny_clip_dir, path),
            "outputs/cf-clip": lambda path: shutil.copytree(tiny_clip_dir, path),
            "org/they-are-all-doctors": lambda path: make_counterfactual_dataset().save_to_disk(path),
            "data/fairface": lambda path: make_fairface(path, n=FAIRFACE_STAND_IN_PEOPLE),
        }
        for written, make in stand_ins.items():
            if written in code:
                (tmp_path / written).parent.mkdir(parents=True, exist_ok=True)
                make(tmp_path / written)
        monkeypatch.chdir(tmp_path)
        return tmp_path

    return prepare


def _scaled_down(code: str) -> str:
    for written, small in SCALED_DOWN.items():
        code = code.replace(written, small)
    return code


@pytest.mark.parametrize("block", _runnable(PYTHON_LANGUAGES))
def test_python_block_runs(block, sandbox):
    sandbox(block.code)
    namespace = {"__name__": "__docs__"}
    if re.search(r"\bdataset\b", block.code):  # blocks that continue "an in-memory datasets.Dataset works too"
        namespace["dataset"] = make_counterfactual_dataset()
    exec(compile(_scaled_down(block.code), block.name, "exec"), namespace)


@pytest.mark.parametrize("block", _runnable(SHELL_LANGUAGES))
def test_shell_block_runs(block, sandbox):
    folder = sandbox(block.code)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    completed = subprocess.run(["bash", "-euo", "pipefail", "-c", _scaled_down(block.code)], cwd=folder, env=env,
                               capture_output=True, text=True, timeout=SHELL_TIMEOUT_S)
    assert completed.returncode == 0, f"{block.name} failed:\n{completed.stdout}\n{completed.stderr}"


def test_the_api_page_renders_every_public_name(tmp_path):
    import cf_hf

    completed = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                                "--site-dir", str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
                               env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert completed.returncode == 0, f"mkdocs build --strict failed:\n{completed.stderr}"
    page = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    anchors = set(re.findall(r'id="(cf_hf\.[\w.]+)"', page))
    missing = [name for name in cf_hf.__all__ if f"cf_hf.{name}" not in anchors]
    assert not missing, f"docs/api.md renders no entry for cf_hf.{missing} (a lazy name griffe cannot resolve?)"
