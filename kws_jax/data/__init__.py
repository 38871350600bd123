"""Keyword data: Speech Commands-layout folders and Google's speech_commands through
tensorflow-datasets, an offline synthetic keyword set, and the training input pipeline.

Modules: `folder` (tfds array_record builder, no TensorFlow), `speech_commands`
(tfds builder; needs `pip install 'kws_jax[tfds]'`), `synth` (espeak-ng keyword
set; `pip install 'kws_jax[synth]'`), `pipeline` (`load_dataset`, `training_epoch`,
`batches`), `augmentation` (`make_augment_fn`). Import the one you need; this package imports none.
"""
