"""tf.distribute strategies by name, and logical CPU devices to exercise them without GPUs."""

import json
import os

import tensorflow as tf

from ls_keras.core.errors import UserError


def split_cpu(num_devices: int) -> None:
  """Splits the CPU into `num_devices` logical devices; must run before TF touches a device."""
  if num_devices <= 1:
    return
  cpus = tf.config.list_physical_devices("CPU")
  try:
    tf.config.set_logical_device_configuration(
      cpus[0], [tf.config.LogicalDeviceConfiguration()] * num_devices
    )
  except RuntimeError as e:
    if len(tf.config.list_logical_devices("CPU")) != num_devices:
      raise UserError(
        f"cannot split the CPU into {num_devices} devices after TensorFlow started: {e}"
      ) from e


_STRATEGIES = {}


def make_strategy(name: str) -> tf.distribute.Strategy:
  """auto: MirroredStrategy over several GPUs, else over several logical CPUs, else the default.

  One strategy per set of devices per process: sweeps train many models in one process,
  and separate MirroredStrategy objects over the same devices reuse collective instance
  keys and abort each other, so `auto` and `mirrored` resolving to the same devices share
  one object. Call it before anything else touches TensorFlow's devices
  (MultiWorkerMirroredStrategy configures collectives at program start-up).

  Raises:
    UserError: an unknown name, or multi_worker without a valid TF_CONFIG.
  """
  key = _resolve(name)
  if key not in _STRATEGIES:
    _STRATEGIES[key] = _new_strategy(key)
  return _STRATEGIES[key]


def _resolve(name: str) -> tuple:
  """(kind, devices) that `name` means on this machine."""
  if name == "multi_worker":  # First: collectives must be configured before TF initialises devices.
    if "TF_CONFIG" not in os.environ:
      raise UserError(
        "--strategy=multi_worker needs the TF_CONFIG environment variable describing the "
        "cluster and this worker's task (see the README's multi-worker section)."
      )
    try:
      json.loads(os.environ["TF_CONFIG"])
    except ValueError as e:
      raise UserError(f"TF_CONFIG is not valid JSON: {e}") from e
    return ("multi_worker", ())
  if name not in ("auto", "mirrored", "one_device"):
    raise UserError(
      f"--strategy={name} is not allowed: choose one of auto, mirrored, multi_worker, one_device."
    )
  gpus = tuple(d.name for d in tf.config.list_logical_devices("GPU"))
  cpus = tuple(d.name for d in tf.config.list_logical_devices("CPU"))
  if name == "one_device":
    return ("one_device", (gpus or cpus)[:1])
  if name == "mirrored" or len(gpus) > 1 or (not gpus and len(cpus) > 1):
    return ("mirrored", gpus or cpus)
  return ("default", ())


def _new_strategy(key: tuple) -> tf.distribute.Strategy:
  kind, devices = key
  if kind == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  if kind == "mirrored":
    return tf.distribute.MirroredStrategy(list(devices))
  if kind == "one_device":
    return tf.distribute.OneDeviceStrategy(devices[0])
  return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes the workdir's outputs (always, except non-chief workers)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return True
  if resolver.task_type == "chief":
    return True
  return (
    resolver.task_type == "worker"
    and resolver.task_id == 0
    and "chief" not in resolver.cluster_spec().as_dict()
  )


def num_workers(strategy: tf.distribute.Strategy) -> int:
  """How many processes train together (the chief and workers of TF_CONFIG; 1 without one)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return 1
  spec = resolver.cluster_spec().as_dict()
  return sum(len(spec.get(kind, ())) for kind in ("chief", "worker")) or 1
