"""tf.distribute strategies by name, and logical CPU devices to exercise them without GPUs."""

import json
import os

import tensorflow as tf

from ls_keras.errors import UserError


def split_cpu(num_devices: int) -> None:
  """Splits the CPU into `num_devices` logical devices; must run before TF touches a device."""
  if num_devices <= 1:
    return
  cpus = tf.config.list_physical_devices("CPU")
  try:
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * num_devices)
  except RuntimeError as e:
    if len(tf.config.list_logical_devices("CPU")) != num_devices:
      raise UserError(f"cannot split the CPU into {num_devices} devices after TensorFlow started: {e}") from e


_STRATEGIES = {}


def make_strategy(name: str) -> tf.distribute.Strategy:
  """auto: MirroredStrategy over all GPUs if several, else over logical CPUs if several, else default.

  One strategy per name per process: sweeps train many models in one process, and separate
  strategy objects would reuse the same collective instance keys and abort each other.
  Call it before anything else touches TensorFlow's devices (MultiWorkerMirroredStrategy
  configures collectives at program start-up).
  """
  if name not in _STRATEGIES:
    _STRATEGIES[name] = _new_strategy(name)
  return _STRATEGIES[name]


def _new_strategy(name: str) -> tf.distribute.Strategy:
  if name == "multi_worker":  # First: collectives must be configured before TF initialises devices.
    if "TF_CONFIG" not in os.environ:
      raise UserError("--strategy=multi_worker needs the TF_CONFIG environment variable describing the "
                      "cluster and this worker's task (see the README's multi-worker section).")
    try:
      json.loads(os.environ["TF_CONFIG"])
    except ValueError as e:
      raise UserError(f"TF_CONFIG is not valid JSON: {e}") from e
    return tf.distribute.MultiWorkerMirroredStrategy()
  gpus = tf.config.list_logical_devices("GPU")
  cpus = tf.config.list_logical_devices("CPU")
  if name == "auto":
    if len(gpus) > 1 or (not gpus and len(cpus) > 1):
      return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()
  if name == "mirrored":
    return tf.distribute.MirroredStrategy(None if gpus else [d.name for d in cpus])
  if name == "one_device":
    return tf.distribute.OneDeviceStrategy((gpus or cpus)[0].name)
  raise UserError(f"--strategy={name} is not allowed: choose one of auto, mirrored, multi_worker, one_device.")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes the workdir's outputs (always, except non-chief workers)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return True
  if resolver.task_type == "chief":
    return True
  return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()
