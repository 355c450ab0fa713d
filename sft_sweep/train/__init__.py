"""Training recipes: pre-training with a shared base-model cache, the SFT job, evaluation, run files."""
