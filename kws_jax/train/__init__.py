"""Training: `python -m kws_jax.train experiments/<name>.py --workdir DIR [--config.key=value ...]`.

Modules: `loop` (the run: setup, resume, epochs, results), `step` (the jitted
training step), `optimizer` (optax optimizer and schedule from the config),
`workdir` (config.json checks), `metrics_log` (metrics.jsonl, TensorBoard), `cli`
(the command line), `parallel` (the device mesh, batch placement, data-parallel steps),
`distributed` (multi-process start; process 0 writes the files).
"""
