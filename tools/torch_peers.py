"""The benchmark's PyTorch peers: ls_keras' small_cnn, alexnet and resnet56 written in PyTorch.

What a user who picked PyTorch instead would run: the same layers and widths, SGD with
Nesterov momentum, `CrossEntropyLoss(label_smoothing=...)`, channels_last tensors and,
for bfloat16, `torch.autocast`. Imported by tools/benchmark.py only when torch is installed
(`pip install -e .[bench]`).
"""

import time

import numpy as np
import torch
from torch import nn


def _small_cnn(channels: int, classes: int) -> nn.Module:
  return nn.Sequential(
    nn.Conv2d(channels, 32, 3, padding=1),
    nn.ReLU(),
    nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3, padding=1),
    nn.ReLU(),
    nn.MaxPool2d(2),
    nn.Flatten(),
    nn.LazyLinear(128),
    nn.ReLU(),
    nn.Linear(128, classes),
  )


def _alexnet(channels: int, classes: int) -> nn.Module:
  # TF's LRN: x / (bias + alpha * window sum)^beta; PyTorch divides alpha by the window size.
  def lrn():
    return nn.LocalResponseNorm(9, alpha=0.001 / 9.0 * 9, beta=0.75, k=1.0)

  return nn.Sequential(
    nn.Conv2d(channels, 64, 5, padding=2),
    nn.ReLU(),
    nn.MaxPool2d(3, 2, padding=1),
    lrn(),
    nn.Conv2d(64, 64, 5, padding=2),
    nn.ReLU(),
    lrn(),
    nn.MaxPool2d(3, 2, padding=1),
    nn.Flatten(),
    nn.LazyLinear(384),
    nn.ReLU(),
    nn.Linear(384, 192),
    nn.ReLU(),
    nn.Linear(192, classes),
  )


class _Block(nn.Module):
  def __init__(self, inputs: int, filters: int, stride: int):
    super().__init__()
    self.conv1 = nn.Conv2d(inputs, filters, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(filters)
    self.conv2 = nn.Conv2d(filters, filters, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(filters)
    self.shortcut = (
      nn.Sequential(nn.Conv2d(inputs, filters, 1, stride, bias=False), nn.BatchNorm2d(filters))
      if stride != 1 or inputs != filters
      else nn.Identity()
    )

  def forward(self, x):
    y = torch.relu(self.bn1(self.conv1(x)))
    return torch.relu(self.shortcut(x) + self.bn2(self.conv2(y)))


def _resnet56(channels: int, classes: int) -> nn.Module:
  layers = [nn.Conv2d(channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
  inputs = 16
  for stage, filters in enumerate((16, 32, 64)):
    for block in range(9):
      layers.append(_Block(inputs, filters, 2 if stage > 0 and block == 0 else 1))
      inputs = filters
  layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, classes)]
  return nn.Sequential(*layers)


BUILDERS = {"small_cnn": _small_cnn, "alexnet": _alexnet, "resnet56": _resnet56}


class TorchPeer:
  """One model's PyTorch training step at `precision` ("float32" or "mixed_bfloat16")."""

  def __init__(self, model_name, shape, batch, precision, alpha, classes, learning_rate, steps):
    torch.manual_seed(0)
    height, width, channels = shape
    rng = np.random.RandomState(0)
    self.x = torch.from_numpy(
      rng.uniform(-2, 2, (batch, channels, height, width)).astype(np.float32)
    ).contiguous(memory_format=torch.channels_last)
    self.y = torch.from_numpy(rng.randint(0, classes, batch)).long()
    self.model = BUILDERS[model_name](channels, classes)
    self.model(self.x)  # Materialise the lazy layers before anything else sees them.
    self.model = self.model.to(memory_format=torch.channels_last)
    self.optimizer = torch.optim.SGD(
      self.model.parameters(), lr=learning_rate, momentum=0.9, nesterov=True
    )
    self.loss = nn.CrossEntropyLoss(label_smoothing=alpha)
    self.bfloat16 = precision == "mixed_bfloat16"
    self.batch = batch
    self.run(2)  # Warm up.

  def _step(self):
    self.optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bfloat16):
      loss = self.loss(self.model(self.x), self.y)
    loss.backward()
    self.optimizer.step()

  def run(self, steps: int) -> float:
    """Images per second over `steps` steps."""
    start = time.perf_counter()
    for _ in range(steps):
      self._step()
    return steps * self.batch / (time.perf_counter() - start)


def version() -> str:
  """The installed PyTorch version."""
  return torch.__version__
