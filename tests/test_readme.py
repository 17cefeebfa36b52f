"""README's Python quickstart runs as written, on tiny models and data in place of the Hub ids."""

from __future__ import annotations

import re
from pathlib import Path

from testing_utils.evaluation import make_fairface
from testing_utils.training import make_counterfactual_dataset

ROOT = Path(__file__).resolve().parents[1]


def _quickstart() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Quickstart (Python)"):]
    return re.search(r"```python\n(.*?)```", section, flags=re.DOTALL).group(1)


def test_the_readme_quickstart_runs_on_tiny_models(tmp_path, tiny_clip_dir, monkeypatch, capsys):
    code = _quickstart()
    assert len(code.strip().splitlines()) <= 12, "the quickstart is meant to be about ten lines"
    make_counterfactual_dataset().save_to_disk(tmp_path / "counterfactuals")
    make_fairface(tmp_path / "fairface", n=1008)  # the default k = 1000 needs a larger gallery
    replacements = {
        '"openai/clip-vit-base-patch32"': repr(str(tiny_clip_dir)),
        '"org/they-are-all-doctors"': repr(str(tmp_path / "counterfactuals")),
        '"data/fairface"': repr(str(tmp_path / "fairface")),
        "per_device_train_batch_size=64": "per_device_train_batch_size=8, max_steps=2, report_to=[], disable_tqdm=True",
    }
    for written, tiny in replacements.items():
        assert written in code, f"README's quickstart no longer holds {written}: update this test"
        code = code.replace(written, tiny)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md quickstart", "exec"), {})
    printed = capsys.readouterr().out
    assert "original" in printed and "CF_0.5" in printed
    assert (tmp_path / "cf-clip-sweep" / "alpha-0.5" / "model.safetensors").is_file()
