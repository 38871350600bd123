"""Experiment configs: `default` (jax-free defaults that experiment files start from) and
`loader` (experiment files, `--config.key=value` overrides, config.json)."""
