"""`cf-hf demo`: the whole method on the embedded professions world, on a CPU, measured.

```bash
cf-hf demo --output_dir outputs/demo                         # one seed, the shipped original (make demo)
cf-hf demo --output_dir outputs/demo --seeds 3 --ablations   # what README's tables report
cf-hf demo --quick --output_dir /tmp/demo                    # the test suite's smoke run
cf-hf demo --pretrain                                        # pretrain and write the shipped original
```

Stages, each through the public API the real pipeline uses:

1. the world: a biased web corpus (`corpus`) and the evaluation galleries (`galleries`);
2. the "original CLIP": the shipped one (`cf_hf.world.original`) when it was pretrained with the
   run's settings on this corpus, otherwise a tiny `CLIPModel` pretrained from scratch (`pretrain`);
3. per seed: the counterfactual dataset made by `cf_hf.generation.generate` with the world's
   components and exported by `dataset_builder.export_dataset` (a folder `load_dataset` reads);
   fine-tuning with the counterfactual loss (`cf_hf.methods.counterfactual.trainer.train`); the WiSE-FT α sweep
   (`cf_hf.interpolation.interpolate_sweep`); with `--ablations`, the ablations (β_cf = 0;
   unbalanced counterfactuals; fine-tuning on a same-size sample of the biased corpus);
4. evaluation of every model with `cf_hf.evaluation.evaluate_models` — fairness (MaxSkew, MinSkew,
   NDKL per attribute) on the world's FairFace, zero-shot accuracy on the world's ImageNet, R@5
   on the world's Flickr — and the random-ranking floor; α chosen on validation galleries;
5. `results.json` (mean over seeds; std alongside), `report.md`, plots, model cards (one README.md
   per CF_α checkpoint of the first seed).

The original model is made once (its seed is part of the world); the seeds vary the
counterfactual data, the fine-tuning and the ablations, which is where runs differ.

Modules: `config` (settings, presets, targets), `stages` (the stages above), `ablations`, `run`
(`run_demo`, the order of the stages and the models compared per seed), `statistics` (numbers over
seeds), `selection` (the rule that chooses α, or any swept setting), `summary` (results.json),
`report` (report.md and the printed table), `plots`, `model_cards`. The command: `cf_hf.cli.demo`.
"""

from .config import DemoConfig
from .run import run_demo

__all__ = ["DemoConfig", "run_demo"]
