"""The explorer's page (gradio): a prompt box, k and the attribute, then per model a grid of its
top-k images, a bar of the attribute shares in that top-k against the gallery's, and the prompt's
MaxSkew and NDKL. Every bad input becomes a message in the page, never a stack trace.

Like `search`, this module is copied into the Space that `cf-hf push explorer` writes (the copy
rewrites the import line below), so it depends on gradio, numpy and PIL alone.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence

from cf_hf.explorer.search import Explorer, ExplorerError, ModelAnswer

DEFAULT_PROMPT = "a photo of a doctor"
DEFAULT_K = 24
MAX_PAGE_K = 200  # the slider's end: more thumbnails than this do not help a reader
# Thumbnails smaller than this (the world's 32 px scenes) are enlarged without smoothing.
DISPLAY_PIXELS = 128
GRID_COLUMNS = 4
# Bar colors: the top-k share, and the gallery's share drawn as a marker on the same track.
TOP_K_COLOR = "#3b82f6"
GALLERY_COLOR = "#111827"


def display_image(image):
    """`image` (PIL) enlarged to at least `DISPLAY_PIXELS` with nearest-neighbour resampling."""
    from PIL import Image

    image = image.convert("RGB")
    scale = -(-DISPLAY_PIXELS // max(1, min(image.size)))
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    return image


def shares_html(answer: ModelAnswer, attribute: str) -> str:
    """The share bar of one answer: per value, its top-k share (bar) against the gallery's (marker)."""
    rows = []
    for value, share in answer.top_k_shares.items():
        gallery = answer.gallery_shares[value]
        rows.append(
            f'<div class="share-row" data-value="{html.escape(value)}" style="display:flex;align-items:center;'
            f'gap:8px;margin:2px 0;font-size:13px">'
            f'<span style="width:110px;overflow:hidden;text-overflow:ellipsis">{html.escape(value)}</span>'
            f'<span style="position:relative;flex:1;height:14px;background:#e5e7eb;border-radius:3px">'
            f'<span class="share-bar" style="position:absolute;left:0;top:0;bottom:0;width:{100 * share:.1f}%;'
            f'background:{TOP_K_COLOR};border-radius:3px"></span>'
            f'<span class="gallery-share" style="position:absolute;top:-2px;bottom:-2px;left:{100 * gallery:.1f}%;'
            f'width:2px;background:{GALLERY_COLOR}"></span></span>'
            f'<span style="width:120px">{100 * share:.0f}% (gallery {100 * gallery:.0f}%)</span></div>'
        )
    return (f'<div class="share-bars"><div style="font-size:12px;color:#6b7280">{html.escape(attribute)} in the '
            f'top-{len(answer.indices)} (bar) vs the gallery (line)</div>{"".join(rows)}</div>')


def metrics_markdown(answer: ModelAnswer) -> str:
    """The heading of one model's column: its name and the prompt's MaxSkew and NDKL."""
    k = len(answer.indices)
    return f"### {answer.model}\nMaxSkew@{k} **{answer.max_skew:.3f}** · NDKL@{k} **{answer.ndkl:.3f}**"


def answer_outputs(explorer: Explorer, image: Callable[[int], object], prompt: str, k, attribute: str,
                   models: Sequence[str] | None) -> tuple[str, list]:
    """The page's message and, per model of the explorer (in order), (heading, gallery items, share
    bar); models not asked for, and every model after a bad input, get empty outputs."""
    empty = [("", [], "") for _ in explorer.models]
    try:
        answers = {answer.model: answer for answer in explorer.search(prompt, k, attribute, models)}
    except ExplorerError as error:
        return f"**Cannot search:** {error}", empty
    columns = []
    for name in explorer.models:
        answer = answers.get(name)
        if answer is None:
            columns.append((f"### {name}\n(not selected)", [], ""))
            continue
        items = [(display_image(image(int(index))), f"{rank + 1}. {label}")
                 for rank, (index, label, score) in enumerate(zip(answer.indices, answer.labels, answer.scores))]
        columns.append((metrics_markdown(answer), items, shares_html(answer, attribute)))
    k = len(next(iter(answers.values())).indices)
    return (f"Top-{k} of {explorer.n_images} images of **{explorer.gallery_name}** for “{prompt.strip()}”; "
            f"shares of **{attribute}**; MaxSkew/NDKL against {explorer.desired.replace('_', ' ')} "
            f"({explorer.convention} convention)."), columns


def build_app(explorer: Explorer, image: Callable[[int], object], title: str = "cf_hf retrieval explorer",
              default_prompt: str = DEFAULT_PROMPT, default_k: int = DEFAULT_K):
    """The gradio `Blocks` of the explorer. `image(index)` returns the gallery's image `index` (PIL)."""
    import gradio as gr

    names = list(explorer.models)
    default_k = max(1, min(int(default_k), explorer.max_k))
    with gr.Blocks(title=title) as app:
        gr.Markdown(f"# {title}\nWhom does each model retrieve for a prompt? Gallery **{explorer.gallery_name}** "
                    f"({explorer.n_images} images, attributes: {', '.join(explorer.attributes)}).")
        with gr.Row():
            prompt = gr.Textbox(value=default_prompt, label="Prompt", elem_id="prompt", scale=4)
            k = gr.Number(value=default_k, label=f"k (1-{explorer.max_k})", precision=0, elem_id="k",
                          minimum=None, maximum=None, scale=1)
            attribute = gr.Dropdown(explorer.attributes, value=explorer.attributes[0], label="Attribute",
                                    elem_id="attribute", scale=1)
        models = gr.Dropdown(names, value=names, multiselect=True, label="Models", elem_id="models")
        search = gr.Button("Search", variant="primary", elem_id="search")
        message = gr.Markdown(elem_id="message")
        outputs = [message]
        with gr.Row():
            for index, name in enumerate(names):
                with gr.Column():
                    outputs.append(gr.Markdown(f"### {name}", elem_id=f"metrics-{index}"))
                    outputs.append(gr.HTML(elem_id=f"shares-{index}"))
                    outputs.append(gr.Gallery(label=f"{name}: top-k", columns=GRID_COLUMNS, height="auto",
                                              object_fit="contain", allow_preview=True, format="png",
                                              elem_id=f"gallery-{index}"))

        def run(prompt_text, k_value, attribute_name, model_names):
            text, columns = answer_outputs(explorer, image, prompt_text, k_value, attribute_name, model_names)
            flat = [text]
            for heading, items, bars in columns:
                flat += [heading, bars, items]
            return flat

        inputs = [prompt, k, attribute, models]
        search.click(run, inputs, outputs, api_name="search")
        prompt.submit(run, inputs, outputs, api_name=False)
    return app
