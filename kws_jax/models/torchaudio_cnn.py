"""The torchaudio speech-commands tutorial CNN (jumpml "Speech Commands recognition using
ConvNets in PyTorch", SpeechCommandsModel).

conv 32 filters (8 mel x 20 frames, VALID) -> BatchNorm -> maxpool 2 -> relu ->
conv 8 filters (4 mel x 10 frames, VALID) -> BatchNorm -> maxpool 2 -> relu ->
flatten -> linear 128 -> BatchNorm -> relu -> linear num_classes.
With 11 classes on 64 mel x 101 frames this has the tutorial's 213,891
parameters. The tutorial returns log_softmax; we return the logits before it
(same argmax and same cross-entropy). Torch initializers and BatchNorm
defaults. Optional dropout before the last layer (the tutorial has it
commented out; default 0).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from kws_jax.models.common import Array, WindowModel, check_window, torch_batch_norm, torch_conv, torch_dense


class TorchaudioCnn(WindowModel):
  """Two conv + BatchNorm blocks and two linear layers (see module docstring)."""

  first_filters: int = 32
  second_filters: int = 8
  fc_units: int = 128
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    check_window(type(self).__name__, x, self.num_frames, self.num_features)
    y = x.astype(jnp.float32)[..., None]  # (B, T, F, 1); torch's kernel (mel, time) is (time, mel) here
    y = torch_conv(self.first_filters, (20, 8), 1, padding="VALID", name="conv1")(y)
    y = nn.relu(nn.max_pool(torch_batch_norm(train, name="bn1")(y), (2, 2), strides=(2, 2)))
    y = torch_conv(self.second_filters, (10, 4), self.first_filters, padding="VALID",
                   name="conv2")(y)
    y = nn.relu(nn.max_pool(torch_batch_norm(train, name="bn2")(y), (2, 2), strides=(2, 2)))
    # torch flattens (C, mel, time); the order only permutes fc1's rows, so we keep NHWC order.
    y = y.reshape(y.shape[0], -1)
    y = torch_dense(self.fc_units, y.shape[-1], name="fc1")(y)
    y = nn.relu(torch_batch_norm(train, name="bn3")(y))
    y = nn.Dropout(self.dropout_rate)(y, deterministic=not train)
    return torch_dense(self.num_classes, self.fc_units, name="fc2")(y)
