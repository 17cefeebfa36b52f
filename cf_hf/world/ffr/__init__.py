"""The From Fake to Real experiment in the professions world (`cf-hf ffr-demo`).

Profession classification with the world's original CLIP as backbone: the real data is the world's
biased scenes with gender as the spurious attribute at a chosen bias level, the synthetic data is
the world's balanced counterfactual dataset (generated with or without the generator signature),
and the schedules real / usb / asb / ffr with ERM and GroupDRO are compared on a group-balanced real
test set. `data` builds the sets, `experiment` runs and tabulates; the command is `cf_hf.cli.ffr_demo`.
"""
