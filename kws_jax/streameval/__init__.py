"""Streaming evaluation on long audio (`python -m kws_jax.stream`).

`settings` (jax-free defaults), `keyword_stream` (long keyword test streams:
make-test), `detection` (labels files, TF streaming accuracy, false rejects at a
false-accept rate, DET curve), `runners` (a step runner over long audio with
resets), `scoring` (smoothing and the eval report), `listen` (live detections),
`cli` (the command line).
"""
