"""Your own keywords (ELL's "train your own custom keywords"): few_shot.py's recipe on your folder.

    python -m kws_jax.train experiments/custom_words.py --workdir runs/mine \
        --config.data.data_dir=/path/to/recordings --config.data.wanted_words=marvin,sheila

The folder has one subfolder per word (`<word>/<speaker>_nohash_<n>.wav`, any sample rate,
mono or stereo), optionally `_background_noise_/` and `validation_list.txt` /
`testing_list.txt`; without lists, clips are split by speaker (TF's hash rule). Words not in
`wanted_words` become `_unknown_`; `wanted_words=all` keeps every word (ELL's 30-word mode).
A head on the pretrained speech embedding (which is fine-tuned a little too) learns from all
your recordings plus synthetic speech of the same words (espeak-ng, flite, Piper; generated on
first use), so ten recordings per word go a long way (BENCHMARKS.md section 10, few-shot
curve); `--config.data.synthetic_mix=0` trains on your recordings alone, and
`--config.model.finetune=false --config.train.embedding_learning_rate=0` ~3x faster.
"""

import ml_collections

from kws_jax.configs import default


def get_config() -> ml_collections.ConfigDict:
  c = default.derived_from(__file__, "few_shot.py")
  # Nothing from ../shared/data: the user's folder alone, split by TF's speaker hash.
  c.data.update(dict(data_dir="", extra_dirs=[], background_dir="", split_salt="",
                     validation_percentage=10.0, testing_percentage=10.0,
                     max_files_per_directory=0))
  return c
