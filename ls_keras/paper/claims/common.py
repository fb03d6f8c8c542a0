"""What every claim module returns (`ClaimResult`) and the small formatting they share."""

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ls_keras.core import config as config_lib
from ls_keras.paper import verdicts


@dataclasses.dataclass
class ClaimResult:
  """One section of the report, as data: the report only renders it.

  `number` is the paper's claim number, or None for a finding of this report with no
  verdict (the "when" figure). `regime` and `ours` are Markdown; `figures` are paths
  relative to the report folder; `data` holds the numbers behind the text (JSON-able).
  """

  number: Optional[int]
  title: str
  paper: str
  regime: str
  ours: str
  verdict: Optional[verdicts.Verdict]
  parts: Sequence[verdicts.Verdict] = ()  # When the verdict combines several rules.
  figures: Sequence[str] = ()
  data: dict = dataclasses.field(default_factory=dict)


def mean_std(values) -> str:
  """'mean ± sd' over seeds (sd 0 for one value), 4 decimals."""
  values = np.asarray(values, np.float64)
  return f"{values.mean():.4f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.4f}"


def describe_config(config) -> str:
  """The settings of a regime that matter, in one line."""
  network = (
    f"{config.model} {'-'.join(map(str, config.hidden_units))}"
    if config.model == "mlp"
    else config.model
  )
  size = (
    f"first {config.train_examples} training images"
    if config.train_examples
    else "the whole training split"
  )
  length = f"{config.train_steps} steps" if config.train_steps else f"{config.epochs} epochs"
  return (
    f"{network} on {config.dataset} ({size}), {config.optimizer} lr {config.learning_rate:g}, "
    f"batch {config.batch_size}, {length}, weight decay {config.weight_decay:g}, augmentation "
    f"{'on' if config.augment else 'off'}"
  )


def other_losses(table) -> List[Tuple[str, str, float]]:
  """(label, curve, key) of every run group of the other calibrating losses, in order.

  The main job trains them in the teacher regime (`reproduce.plan`) under curves named as
  the losses (`config.LOSS_LABELS`), keyed by their setting (online LS's mix, focal gamma).
  """
  return [
    (config_lib.loss_label(curve, key), curve, key)
    for curve in config_lib.LOSS_LABELS
    for key in table.keys(curve=curve)
  ]


def ranking(ece: Dict[str, float]) -> str:
  """'a 0.017, b 0.020, ...': the named ECEs, lowest first, 3 decimals."""
  return ", ".join(f"{name} {value:.3f}" for name, value in sorted(ece.items(), key=lambda i: i[1]))
