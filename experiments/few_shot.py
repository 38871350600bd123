"""Few-shot keywords: a few real recordings per word plus synthetic speech, on the embedding.

sc12_embedding.py (the speech embedding fine-tuned at 1e-4 + pool head, real speech
from ../shared/data split by speaker, its augmentation, and the quick start's whole
synthetic set merged into training: espeak-ng, flite, Piper, 480 voices, speaking
custom words too) with at most `data.max_files_per_directory` (10) real training
clips per word folder. The cap applies to the recordings only. Frozen
(`--config.model.finetune=false --config.train.embedding_learning_rate=0`) trains ~3x
faster and scores 4-11 points lower. The few-shot curve (5 / 10 / 30 / 100 clips per word):
    python -m kws_jax.train experiments/few_shot.py --workdir runs/few10 \
        [--config.data.max_files_per_directory=5|30|100]
Measured on the held-out speakers: BENCHMARKS.md section 10. custom_words.py is this
recipe on your own folder.
"""

import ml_collections

from kws_jax.configs import default


def get_config() -> ml_collections.ConfigDict:
  c = default.derived_from(__file__, "sc12_embedding.py")
  c.data.max_files_per_directory = 10
  return c
