import pytest
import tensorflow as tf

from ls_keras.training import strategy
from ls_keras.core.errors import UserError


def test_one_strategy_per_name_per_process():
  assert strategy.make_strategy("one_device") is strategy.make_strategy("one_device")
  assert strategy.is_chief(strategy.make_strategy("one_device"))


def test_auto_uses_the_logical_cpus_when_there_are_several():
  assert len(tf.config.list_logical_devices("CPU")) == 2  # Set by conftest.
  assert strategy.make_strategy("auto").num_replicas_in_sync == 2


def test_multi_worker_without_tf_config_is_a_clear_error(monkeypatch):
  monkeypatch.delenv("TF_CONFIG", raising=False)
  with pytest.raises(UserError, match="needs the TF_CONFIG"):
    strategy.make_strategy("multi_worker")


def test_unknown_strategy_is_refused():
  with pytest.raises(UserError, match="--strategy=tpu"):
    strategy.make_strategy("tpu")


def test_auto_and_mirrored_over_the_same_devices_are_one_object():
  """Two MirroredStrategy objects over the same devices would abort each other's collectives."""
  assert strategy.make_strategy("auto") is strategy.make_strategy("mirrored")
