"""The torchaudio / jumpml speech-commands tutorial CNN recipe on ../shared/data.

64 log-mel (dB) bands x 101 frames (torchaudio MelSpectrogram defaults, 20 ms
window, 10 ms hop), SGD lr 0.1 momentum 0.5, StepLR(step_size=5, gamma=0.25),
SpecAugment time masking (torchaudio.transforms.TimeMasking), batch 64, 20 epochs.
"""

import ml_collections

from kws_jax.configs import default


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.data = default.use_shared_speech_data(default.data_config())
  c.features = ml_collections.ConfigDict(dict(preset="torchaudio"))
  c.model = ml_collections.ConfigDict(dict(name="torchaudio_cnn"))
  c.train = default.train_config()
  c.train.update(dict(
      epochs=20, batch_size=64, optimizer="sgd", learning_rate=0.1, momentum=0.5,
      schedule="step", step_size_epochs=5, step_gamma=0.25,
      spec_augment=dict(time_masks=1, time_mask_max=10, freq_masks=0, freq_mask_max=0),
      # XLA:CPU runs convolutions inside a loop body ~6x slower: jit single steps, no scan.
      steps_per_call=1, unroll_steps=True))
  return c
