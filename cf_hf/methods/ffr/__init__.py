"""From Fake to Real (seed 003): CLIP image classifiers trained on real and synthetic data, by schedule.

- `groupdro`: the GroupDRO loss (Sagawa et al. 2020) over (class, attribute value) groups.
- `encoding`: checks and encodes `datasets` datasets with an image, a label and a group column.
- `trainer`: `ClassifierTrainingArguments`, `ClassifierTrainer` and `train_classifier`, which runs
  the schedules `real`, `mixed` and `ffr` on `transformers`' `CLIPForImageClassification`.
- `evaluation`: worst-group, balanced and mean accuracy, the stereotypical/anti-stereotypical gap,
  and the synthetic-vs-real probe.
"""
