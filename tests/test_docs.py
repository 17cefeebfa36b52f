"""The documentation the code points to exists, and README describes what the code does."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_FOLDERS = ("cf_hf", "dataset_builder", "model_card", "hub_scripts", "benchmarks")
# A citation of a document section in code: "docs/method.md §2", "METHOD.md §1".
CITATION = re.compile(r"([\w./-]+\.md) §(\d+)")


def _citations():
    for folder in SOURCE_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                for document, section in CITATION.findall(line):
                    yield path.relative_to(ROOT), line_number, document, section


def test_the_code_cites_sections_of_documents_in_the_repository():
    citations = list(_citations())
    assert citations, "the code cites no document section; this test would check nothing"
    for path, line_number, document, section in citations:
        target = ROOT / document
        assert target.is_file(), f"{path}:{line_number} cites {document}, which the repository lacks"
        headings = re.findall(r"^#+ §(\d+)\b", target.read_text(encoding="utf-8"), flags=re.MULTILINE)
        assert section in headings, f"{path}:{line_number} cites {document} §{section}; it has §{headings}"


def _readme_quick_paragraph() -> str:
    readme = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    start = readme.index("- `--quick`")
    return " ".join(readme[start : readme.index("\n\n", start)].split())


def test_readme_describes_the_quick_demo_as_configured():
    from cf_hf.world.demo import DemoConfig

    quick = DemoConfig.quick()
    paragraph = _readme_quick_paragraph()
    alphas = ", ".join(f"{alpha:g}" for alpha in quick.alphas)
    expected = [
        f"corpus of {quick.corpus.size:,} pairs",
        f"pretrained for {quick.pretrain.steps} steps",
        f"{quick.captions_per_concept} captions × {quick.decorators_per_caption} decorators",
        f"{quick.appearances_per_base} appearances per base image",
        f"{quick.finetune_steps} fine-tuning steps",
        f"at batch {quick.batch_size} (groups of {quick.group_size}, learning rate {quick.learning_rate:.0e})".replace("e-0", "e-"),
        f"α ∈ {{{alphas}}}",
        "CLIP-clip keeping " + ", ".join(map(str, quick.clip_clip_keep[:-1])) + f" or {quick.clip_clip_keep[-1]}",
        "biased prompts at λ = " + ", ".join(f"{lam:g}" for lam in quick.biased_prompts_lambdas),
        f"{quick.fairface_per_cell} people per grid cell",
        f"{quick.imagenet_per_class} scenes per class",
        f"{quick.flickr_images} Flickr images",
        f"k = {quick.fairness_k}",
        "one seed" if quick.seeds == 1 else f"{quick.seeds} seeds",
        "no ablations" if not quick.ablations else "with ablations",
    ]
    missing = [phrase for phrase in expected if phrase not in paragraph]
    assert not missing, f"docs/results.md's --quick paragraph does not match DemoConfig.quick(): {missing}"
