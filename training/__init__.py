"""hcdp_training: synthetic data, datasets, losses, metrics, the two-stage trainer, evaluation."""
