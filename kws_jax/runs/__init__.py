"""A training run's workdir as later stages read it: `checkpoints` (orbax latest/best) and
`trained_model` (`load(workdir) -> Trained`)."""
