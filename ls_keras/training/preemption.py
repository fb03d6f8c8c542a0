"""Preemption: SIGTERM or SIGINT make a run save a checkpoint at the next step boundary and stop.

Schedulers (Slurm, Kubernetes, cloud spot instances) send SIGTERM some seconds before they
kill a job. `Watch` turns the signal into a request the training loop reads after every
train call (at most `--steps_per_execution` steps away): it then saves a checkpoint of the
exact step, and raises `RunPreempted`, which the command turns into the exit code
`EXIT_PREEMPTED` with a message. The rerun resumes from that step, seeing the batches the
uninterrupted run would have seen. A second Ctrl-C stops at once, as usual.

Under MultiWorkerMirroredStrategy every worker must save at the same step (saving is
collective): the workers agree with an all-reduce of their requests after each train call,
so one preempted worker stops them all at the same step.
"""

import signal
import threading
from typing import Optional

import tensorflow as tf
from absl import logging

from ls_keras.training import strategy as strategy_lib

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Watch:
  """Within `with Watch() as watch:`, SIGTERM/SIGINT set `watch.signal` instead of killing.

  Outside the main thread (where Python cannot install handlers) it watches nothing.
  """

  def __init__(self):
    self.signal: Optional[str] = None
    self._previous = {}
    self._agree = None

  def __enter__(self) -> "Watch":
    if threading.current_thread() is threading.main_thread():
      for sig in SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}

  def _handle(self, number, frame) -> None:
    del frame
    name = signal.Signals(number).name
    if self.signal is not None and number == signal.SIGINT:
      raise KeyboardInterrupt  # A second Ctrl-C: stop now.
    self.signal = name
    logging.warning(
      "Received %s: saving a checkpoint at the next step boundary, then stopping (press "
      "Ctrl-C again to stop at once, losing the steps since the last checkpoint).",
      name,
    )

  def requested(self, strategy: tf.distribute.Strategy) -> bool:
    """Whether any worker was asked to stop (all workers get the same answer)."""
    asked = self.signal is not None
    if strategy_lib.num_workers(strategy) <= 1:
      return asked
    if self._agree is None:

      @tf.function
      def agree(flag):  # One collective: how many workers were asked.
        return strategy.reduce("SUM", strategy.run(tf.identity, args=(flag,)), axis=None)

      self._agree = agree
    return bool(self._agree(tf.constant(1.0 if asked else 0.0)).numpy() > 0)
