"""The paper's method ("They're All Doctors"): CLIP fine-tuned with a counterfactual loss, then WiSE-FT.

- `modeling`: `CounterfactualCLIPModel`, a `CLIPModel` whose `forward` adds the counterfactual loss.
- `losses`: the CLIP and counterfactual losses and their distributed gather, pure tensor code.
- `sampler`: column checks, `GroupBatchSampler` (P groups × K members per batch) and the collator.
- `trainer`: `CounterfactualTrainingArguments`, `CounterfactualTrainer`, LoRA, `train`.
- `fit`: `fit_counterfactual` (training and the WiSE-FT sweep, one checkpoint per α).
"""
