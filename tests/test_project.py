"""The project command on two tiny real runs, and the projector files via TensorBoard's plugin."""

import json
import os

import numpy as np
import pytest

from conftest import invoke


@pytest.fixture(scope="module")
def projected(tiny_runs, fashion_data_dir, tmp_path_factory):
  out = tmp_path_factory.mktemp("proj")
  result = invoke(
    "project",
    f"--data_dir={fashion_data_dir}",
    f"--workdir={tiny_runs[0.0]}",
    f"--workdir={tiny_runs[0.1]}",
    "--classes=similar",
    "--classes=Trouser,Bag,Sneaker",
    "--examples_per_class=20",
    "--projector_examples=50",
    f"--output_dir={out}",
  )
  assert result.code == 0, result.err[-3000:]
  return out, result


def test_writes_figure_points_and_tightness(projected):
  out, result = projected
  assert open(out / "projection.png", "rb").read(4) == b"\x89PNG"
  summary = json.load(open(out / "projection.json"))
  assert summary["triples"][1] == ["Trouser", "Bag", "Sneaker"]
  assert len(summary["triples"][0]) == 3
  # 2 runs x 2 triples x 2 splits, each with in-plane and full-space numbers.
  assert len(summary["tightness"]) == 8
  assert all(n["plane"]["ratio"] > 0 and n["full"]["ratio"] > 0 for n in summary["tightness"])
  points = np.load(out / "projection_points.npz")
  keys = [k for k in points.files if k.endswith("/points")]
  assert len(keys) == 8 and all(points[k].shape == (60, 2) for k in keys)
  assert "ratio (plane)" in result.out


def test_projector_embeddings_are_served_by_tensorboards_plugin_from_the_runs_tb_folder(
  projected, tiny_runs
):
  """With the logdir a user naturally passes (RUN/tb, as the README says), through TensorBoard's
  own event multiplexer, data provider and Projector plugin.
  """
  from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
  from tensorboard.plugins import base_plugin
  from tensorboard.plugins.projector import projector_plugin
  from werkzeug import test as werkzeug_test

  logdir = os.path.join(tiny_runs[0.1], "tb")
  multiplexer = plugin_event_multiplexer.EventMultiplexer()
  multiplexer.AddRunsFromDirectory(logdir)
  multiplexer.Reload()
  provider = data_provider.MultiplexerDataProvider(multiplexer, logdir)
  plugin = projector_plugin.ProjectorPlugin(
    base_plugin.TBContext(logdir=logdir, data_provider=provider, multiplexer=multiplexer)
  )
  apps = plugin.get_plugin_apps()

  def client(route, **query):
    return werkzeug_test.Client(apps[route]).get(route, query_string=query)

  runs = json.loads(client(projector_plugin.RUNS_ROUTE).get_data())
  assert runs == ["projector"]
  config = json.loads(client(projector_plugin.CONFIG_ROUTE, run="projector").get_data())
  (embedding,) = config["embeddings"]
  name = embedding["tensorName"]
  tensor = np.frombuffer(
    client(projector_plugin.TENSOR_ROUTE, run="projector", name=name).get_data(), np.float32
  )
  assert tensor.size == 50 * 128  # 50 examples x the small CNN's 128 penultimate units.
  metadata = (
    client(projector_plugin.METADATA_ROUTE, run="projector", name=name)
    .get_data(as_text=True)
    .splitlines()
  )
  assert metadata[0] == "label\tclass\tsplit" and len(metadata) == 51
  assert {line.split("\t")[2] for line in metadata[1:]} == {"train", "validation"}
  sprite = client(projector_plugin.SPRITE_IMAGE_ROUTE, run="projector", name=name)
  assert sprite.status_code == 200 and sprite.get_data()[:4] == b"\x89PNG"
  plugin._determine_is_active()  # pylint: disable=protected-access  # What the frontend's 'enabled' reads.
  assert plugin.is_active()
