"""Deployment: the streaming step and what turns it into a device binary.

`streaming_step` (featurizer + VAD + model + smoothing as one pure step), `protocol`
(what every step runner speaks), `int8` (the int8 jaxpr rewriter), `int8_report`
(float-vs-int8 accuracy, `python -m kws_jax.quantize`), `stablehlo_export`
(`python -m kws_jax.export`), `iree_compile` (`python -m kws_jax.compile`),
`iree_runner` (a compiled module as a step runner).
"""
