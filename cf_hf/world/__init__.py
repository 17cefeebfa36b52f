"""The professions world: an embedded default in which associative bias is planted on purpose, so
that the whole method runs on a CPU in minutes and shows, measured, that it debiases (`cf-hf demo`).

- `render`: procedural 32 px scenes — 8 professions in 4 shared settings told apart by a prop
  (drawn with probability 0.6), decorators (framing incl. 20% close-ups, lighting, camera noise,
  framing offset, scale), and a person whose gender presentation (hair length), skin tone (4
  tones, standing in for race groups) and age (hair color) are visible.
- `palette`: the reserved person colors and the pixel classifier the segmenter relies on.
- `components`: `WorldCaptionWriter`, `WorldTextToImage`, `WorldSegmenter`, `WorldInpainter` —
  the `cf_hf.generation.interfaces` the real pipeline uses, working from pixels alone.
- `corpus`: the biased web corpus (per profession a stereotyped person, p = 0.85 per attribute),
  whose captions sometimes name the person's appearance, marked values more often.
- `pretrain`: the "original CLIP", a tiny `transformers` `CLIPModel` pretrained from scratch.
- `galleries`: the world's FairFace, ImageNet and Flickr, and their `cf_hf.evaluation` sets.
- `knowledge`: what a world CLIP knows about people (zero-shot attribute accuracy, the text side of
  the stereotype, retrieval bias): `python -m cf_hf.world.knowledge`.
- `demo`: `cf-hf demo`.

Data files (same formats as `cf_hf/concepts`): `professions.yaml`, `decorators.yaml`,
`attribute_grid.yaml` (gender x skin_tone x age); `appearance_words.yaml`, the words captions use
for the person's appearance.
"""
