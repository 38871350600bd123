"""Plain-PyTorch baselines, written from the recipes' published descriptions.

  EllGruSpotter      microsoft/ELL train_classifier.py GRUKeywordSpotter: two
                     torch.nn.GRU layers, Linear head on every frame, log_softmax,
                     mean over time; trained with NLLLoss and RMSprop.
  TorchaudioCnn      the torchaudio speech-commands tutorial CNN (jumpml): conv
                     32@(8 mel x 20 frames) + BatchNorm + maxpool 2 + relu, conv
                     8@(4 x 10) + BatchNorm + maxpool 2 + relu, Linear 128 +
                     BatchNorm + relu, Linear; log_softmax, NLLLoss.
  TorchFeaturizer    the kws_jax frontend's math (frames, window, |rfft|^p, mel
                     matmul, log/dB, DCT) in torch, for one FrontendConfig.

The benchmark runs these next to kws_jax in the same process on the same shapes,
so every speed figure is a ratio measured side by side. Needs `torch` (the
`bench` extra: pip install torch==2.13.0).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kws_jax.ops import frontend


class EllGruSpotter(nn.Module):
  """ELL's GRU keyword spotter; input (T, B, F) like ELL (seq first), output (B, C) log-probs."""

  def __init__(self, num_features: int = 80, hidden_size: int = 128, num_classes: int = 12,
               num_layers: int = 2):
    super().__init__()
    self.grus = nn.ModuleList(
        nn.GRU(num_features if i == 0 else hidden_size, hidden_size) for i in range(num_layers))
    self.hidden2keyword = nn.Linear(hidden_size, num_classes)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    for gru in self.grus:
      x, _ = gru(x)
    return F.log_softmax(self.hidden2keyword(x), dim=2).mean(dim=0)

  def initial_state(self, batch_size: int, num_frames: int) -> dict[str, torch.Tensor]:
    """Streaming state mirroring models.create("gru").step: hidden states + last window's log-probs."""
    return {"h": torch.zeros(len(self.grus), 1, batch_size, self.grus[0].hidden_size),
            "log_probs": torch.zeros(batch_size, num_frames, self.hidden2keyword.out_features)}

  def step(self, state: dict[str, torch.Tensor], frame: torch.Tensor
           ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """frame (B, F) -> (state, mean log-probs over the last num_frames frames)."""
    x = frame[None]
    hidden = []
    for index, gru in enumerate(self.grus):
      x, h = gru(x, state["h"][index])
      hidden.append(h)
    log_probs = F.log_softmax(self.hidden2keyword(x[0]), dim=-1)
    window = torch.cat([state["log_probs"][:, 1:], log_probs[:, None]], dim=1)
    return {"h": torch.stack(hidden), "log_probs": window}, window.mean(dim=1)


def ell_gru_from_params(params: dict[str, Any]) -> EllGruSpotter:
  """An EllGruSpotter holding the weights of a kws_jax `gru` model (params collection)."""
  layers = sorted(k for k in params if k.startswith("layer_"))
  first = params["layer_0"]
  model = EllGruSpotter(num_features=first["input_kernel"].shape[0],
                        hidden_size=first["recurrent_kernel"].shape[0],
                        num_classes=params["head"]["kernel"].shape[1], num_layers=len(layers))
  as_t = lambda a: torch.from_numpy(np.array(a, dtype=np.float32))
  with torch.no_grad():
    for gru, name in zip(model.grus, layers):
      p = params[name]
      gru.weight_ih_l0.copy_(as_t(p["input_kernel"]).T)
      gru.weight_hh_l0.copy_(as_t(p["recurrent_kernel"]).T)
      gru.bias_ih_l0.copy_(as_t(p["input_bias"]))
      gru.bias_hh_l0.copy_(as_t(p["recurrent_bias"]))
    model.hidden2keyword.weight.copy_(as_t(params["head"]["kernel"]).T)
    model.hidden2keyword.bias.copy_(as_t(params["head"]["bias"]))
  return model


class TorchaudioCnn(nn.Module):
  """The torchaudio tutorial CNN; input (B, 1, mels, frames); 213,891 params for 64 x 101, 11 classes."""

  def __init__(self, num_mels: int = 64, num_frames: int = 101, num_classes: int = 11):
    super().__init__()
    self.conv1 = nn.Conv2d(1, 32, (8, 20))
    self.bn1 = nn.BatchNorm2d(32)
    self.conv2 = nn.Conv2d(32, 8, (4, 10))
    self.bn2 = nn.BatchNorm2d(8)
    mels_out = ((num_mels - 8 + 1) // 2 - 4 + 1) // 2   # two VALID convs, each pooled by 2
    frames_out = ((num_frames - 20 + 1) // 2 - 10 + 1) // 2
    flat = 8 * mels_out * frames_out
    self.fc1 = nn.Linear(flat, 128)
    self.bn3 = nn.BatchNorm1d(128)
    self.fc2 = nn.Linear(128, num_classes)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = F.relu(F.max_pool2d(self.bn1(self.conv1(x)), 2))
    x = F.relu(F.max_pool2d(self.bn2(self.conv2(x)), 2))
    x = F.relu(self.bn3(self.fc1(x.flatten(1))))
    return F.log_softmax(self.fc2(x), dim=1)


def count_params(model: nn.Module) -> int:
  return sum(p.numel() for p in model.parameters())


class TorchFeaturizer:
  """kws_jax's frontend math for one FrontendConfig in torch (rfft path), batch and streaming."""

  def __init__(self, cfg: frontend.FrontendConfig):
    self.cfg = cfg
    bins = frontend.used_bins(cfg)
    self.window = torch.from_numpy(frontend.window_fn(cfg.window, cfg.window_size).astype(np.float32))
    self.mel = torch.from_numpy(frontend.mel_filterbank(cfg)[:bins].astype(np.float32))
    self.dct = (torch.from_numpy(frontend.dct_matrix(cfg.num_mels, cfg.num_mfcc).astype(np.float32))
                if cfg.num_mfcc else None)
    self.bins = bins

  def frames_to_features(self, frames: torch.Tensor) -> torch.Tensor:
    cfg = self.cfg
    spec = torch.fft.rfft(frames * self.window, n=cfg.n_fft, dim=-1)[..., :self.bins]
    power = spec.real.square() + spec.imag.square()
    spec = power if cfg.power == 2.0 else power.sqrt()
    mel = spec @ self.mel
    if cfg.compression == "log":
      feats = torch.log(torch.clamp(mel, min=cfg.log_floor) + cfg.log_offset)
    elif cfg.compression == "db":
      feats = (10.0 * torch.log10(torch.clamp(mel, min=cfg.db_amin))
               - 10.0 * math.log10(max(cfg.db_ref, cfg.db_amin)))
    else:
      feats = mel
    return feats @ self.dct if self.dct is not None else feats

  def __call__(self, audio: torch.Tensor) -> torch.Tensor:
    """(B, S) float32 -> (B, T, F), like frontend.featurize."""
    cfg = self.cfg
    if cfg.center:
      pad = cfg.window_size // 2
      audio = F.pad(audio[:, None], (pad, pad), mode=cfg.pad_mode)[:, 0]
    feats = self.frames_to_features(audio.unfold(-1, cfg.window_size, cfg.hop_size))
    if cfg.top_db is not None and cfg.compression == "db":
      peak = feats.amax(dim=(-2, -1), keepdim=True)
      feats = torch.maximum(feats, peak - cfg.top_db)
    return feats

  def initial_state(self, batch_size: int) -> torch.Tensor:
    return torch.zeros(batch_size, self.cfg.window_size)

  def step(self, buffer: torch.Tensor, chunk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """chunk (B, hop) -> (buffer, frame (B, F)), like frontend.step."""
    buffer = torch.cat([buffer, chunk], dim=-1)[:, -self.cfg.window_size:]
    return buffer, self.frames_to_features(buffer)


# ------------------------------------------------------------------ runners

class TrainRunner:
  """Runs `steps` training steps of a torch model per call on in-memory batches."""

  def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
               y: torch.Tensor, description: str):
    self.model, self.optimizer, self.x, self.y = model, optimizer, x, y
    # From the labels (steps, B): x is seq-first (steps, T, B, F) for the GRU.
    self.clips_per_call = int(y.shape[0] * y.shape[1])
    self.description = description
    self.model.train()
    self()  # warm up (allocator, first-call dispatch)

  def __call__(self) -> float:
    loss = None
    for x, y in zip(self.x, self.y):
      self.optimizer.zero_grad()
      loss = F.nll_loss(self.model(x), y)
      loss.backward()
      self.optimizer.step()
    return float(loss.detach())


def ell_gru_train_runner(x: np.ndarray, y: np.ndarray, learning_rate: float = 1e-3,
                         weight_decay: float = 1e-5, alpha: float = 0.99, eps: float = 1e-8,
                         hidden_size: int = 128, num_layers: int = 2, num_classes: int = 12,
                         seed: int = 0) -> TrainRunner:
  """ELL's training loop body on x (steps, B, T, F), y (steps, B); fed seq-first as ELL does."""
  torch.manual_seed(seed)
  model = EllGruSpotter(x.shape[-1], hidden_size, num_classes, num_layers)
  optimizer = torch.optim.RMSprop(model.parameters(), lr=learning_rate, alpha=alpha, eps=eps,
                                  weight_decay=weight_decay)
  xt = torch.from_numpy(np.ascontiguousarray(np.swapaxes(x, 1, 2)))  # (steps, T, B, F)
  return TrainRunner(model, optimizer, xt, torch.from_numpy(y.astype(np.int64)),
                     f"torch {torch.__version__} eager, {torch.get_num_threads()} threads")


def torchaudio_cnn_train_runner(x: np.ndarray, y: np.ndarray, num_classes: int = 11,
                                learning_rate: float = 1e-3, seed: int = 0) -> TrainRunner:
  """The tutorial CNN with Adam on x (steps, B, T, F) features, fed as (B, 1, F, T)."""
  torch.manual_seed(seed)
  model = TorchaudioCnn(x.shape[-1], x.shape[-2], num_classes)
  optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
  xt = torch.from_numpy(np.ascontiguousarray(np.swapaxes(x, -1, -2)[:, :, None]))
  return TrainRunner(model, optimizer, xt, torch.from_numpy(y.astype(np.int64)),
                     f"torch {torch.__version__} eager, {torch.get_num_threads()} threads")


class StreamStepRunner:
  """One streaming hop per call, batch 1: featurizer step + EllGruSpotter step, eager, no_grad."""

  def __init__(self, featurizer: TorchFeaturizer, model: EllGruSpotter, num_frames: int,
               chunks: np.ndarray):
    self.featurizer, self.model = featurizer, model.eval()
    self.chunks = [torch.from_numpy(c[None].astype(np.float32)) for c in chunks]
    self.buffer = featurizer.initial_state(1)
    self.state = model.initial_state(1, num_frames)
    self.index = 0

  @torch.no_grad()
  def __call__(self) -> torch.Tensor:
    chunk = self.chunks[self.index % len(self.chunks)]
    self.index += 1
    self.buffer, frame = self.featurizer.step(self.buffer, chunk)
    self.state, out = self.model.step(self.state, frame)
    return out
