"""Evaluation of trained classifiers: `classification` (metrics, scoring clip arrays),
`plots` (confusion matrix, training curves), `folder_eval` (`python -m kws_jax.evaluate`)."""
