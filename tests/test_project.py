"""The project command on two tiny real runs, and the projector files via TensorBoard's plugin."""

import json
import os

import numpy as np
import pytest

from tensorboard.plugins.projector import projector_plugin

from conftest import REPO, fashion_arrays, invoke
from ls_keras import projection
from ls_keras.core.errors import UserError


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
    "--tsne",
    "--tsne_examples=200",
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


def test_tsne_maps_the_same_stratified_validation_examples_for_every_run(
  projected, tiny_runs, fashion_data_dir
):
  """tsne.png, and coordinates that are t-SNE's of each run's features on the recorded
  examples (recomputed here from the validation split and the saved model)."""
  import keras

  from ls_keras import data
  from ls_keras.core import workdir
  from ls_keras.projection import tsne

  out, result = projected
  assert open(out / "tsne.png", "rb").read(4) == b"\x89PNG"
  maps = np.load(out / "tsne_points.npz")
  indices, labels = maps["indices"], maps["labels"]
  summary = json.load(open(out / "projection.json"))["tsne"]
  assert summary["examples"] == 200 and summary["perplexity"] == 30.0
  assert [r["alpha"] for r in summary["runs"]] == [0.0, 0.1]
  assert all(-1 <= r["silhouette_tsne"] <= 1 for r in summary["runs"])
  splits = data.load_run_splits(workdir.require(tiny_runs[0.0]).run_config(), fashion_data_dir)
  assert list(maps["class_names"]) == list(splits.class_names)
  images, every_label = (
    np.concatenate(a) for a in zip(*splits.validation.batch(4096).as_numpy_iterator())
  )
  assert len(every_label) == 1000 and np.all(np.diff(indices) > 0)
  np.testing.assert_array_equal(labels, every_label[indices])
  shares = np.bincount(labels, minlength=10) - 200 * np.bincount(every_label, minlength=10) / 1000
  assert np.all(np.abs(shares) < 1)  # Stratified: each class its share of the 200.
  model = keras.models.load_model(os.path.join(tiny_runs[0.1], "model.keras"))
  features = projection.penultimate(
    projection.extract(model)[0], images[indices].astype(np.float32)
  )
  np.testing.assert_allclose(
    maps["alpha0.1/coordinates"], tsne.embed(features), rtol=1e-5, atol=1e-5
  )
  assert maps["alpha0/coordinates"].shape == (200, 2)
  assert "silhouette (t-SNE map)" in result.out and "tsne.png" in result.out


def test_projector_embeddings_are_served_by_tensorboards_plugin_from_the_runs_tb_folder(
  projected, tiny_runs
):
  """With the logdir a user naturally passes (RUN/tb, as the README says), through TensorBoard's
  own event multiplexer, data provider and Projector plugin.
  """
  client = _projector_client(os.path.join(tiny_runs[0.1], "tb"))
  runs = json.loads(client(projector_plugin.RUNS_ROUTE).get_data())
  assert runs == ["projector"]
  name, tensor, metadata = _served_embedding(client, "projector")
  assert tensor.size == 50 * 128  # 50 examples x the small CNN's 128 penultimate units.
  assert metadata[0] == "label\tclass\tsplit" and len(metadata) == 51
  assert {line.split("\t")[2] for line in metadata[1:]} == {"train", "validation"}
  sprite = client(projector_plugin.SPRITE_IMAGE_ROUTE, run="projector", name=name)
  assert sprite.status_code == 200 and sprite.get_data()[:4] == b"\x89PNG"
  assert client.plugin.is_active()


def _projector_client(logdir):
  """A request function for TensorBoard's own Projector plugin serving `logdir`."""
  from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
  from tensorboard.plugins import base_plugin
  from werkzeug import test as werkzeug_test

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

  plugin._determine_is_active()  # pylint: disable=protected-access  # What the frontend's 'enabled' reads.
  client.plugin = plugin
  return client


def _served_embedding(client, run):
  """(tensor name, the embeddings as served, the metadata lines as served) of a run."""
  config = json.loads(client(projector_plugin.CONFIG_ROUTE, run=run).get_data())
  (embedding,) = config["embeddings"]
  name = embedding["tensorName"]
  tensor = np.frombuffer(
    client(projector_plugin.TENSOR_ROUTE, run=run, name=name).get_data(), np.float32
  )
  metadata = client(projector_plugin.METADATA_ROUTE, run=run, name=name).get_data(as_text=True)
  return name, tensor, metadata.splitlines()


@pytest.mark.parametrize(
  "header, rows, lines",
  [
    (("class",), [("Bag",), ("Coat",), ("Bag",), ("Shirt",), ("Coat",)], ["Bag", "Coat"]),
    (("label", "class"), [(8, "Bag"), (4, "Coat"), (8, "Bag"), (6, "Shirt"), (4, "Coat")], None),
  ],
)
def test_projector_metadata_has_a_header_row_only_with_several_columns(
  tmp_path, header, rows, lines
):
  """TensorBoard's projector reads a one-column file as labels only: a header row there made
  6 lines for 5 embeddings, and the projector refused the metadata (pytorch/pytorch#38564)."""
  from ls_keras import projection

  logdir = tmp_path / "tb" / "projector"
  embeddings = np.random.RandomState(0).normal(size=(5, 3))
  images = np.zeros((5, 4, 4, 1))
  projection.write_projector(str(logdir), embeddings, images, rows, header)
  written = (logdir / "metadata.tsv").read_text().splitlines()
  _, tensor, served = _served_embedding(_projector_client(str(tmp_path / "tb")), "projector")
  np.testing.assert_allclose(tensor.reshape(5, 3), embeddings, rtol=1e-6)
  assert served == written
  if len(header) == 1:
    assert len(written) == 5 and written[:2] == lines  # One label per embedding.
  else:
    assert len(written) == 6 and written[0] == "label\tclass" and written[1] == "8\tBag"
  with pytest.raises(UserError, match="4 metadata rows for 5 embeddings"):
    projection.write_projector(str(tmp_path / "bad"), embeddings, images, rows[:4], header)


def test_project_a_keras_file_trained_elsewhere(foreign_classifier, fashion_data_dir, tmp_path):
  """Penultimate features: the input of the last Dense layer (its softmax does not matter);
  the projector embeddings go to --output_dir, with the data set's class names."""
  import keras

  root, model = foreign_classifier
  before = sorted(os.listdir(root))
  out = tmp_path / "out"
  result = invoke(
    "project",
    f"--model_file={root / 'classifier.keras'}",
    "--dataset=fashion_mnist",
    f"--data_dir={fashion_data_dir}",
    "--classes=Trouser,Bag,Sneaker",
    "--examples_per_class=20",
    "--projector_examples=30",
    "--tsne",
    "--tsne_examples=100",
    "--tsne_perplexity=10",
    f"--output_dir={out}",
  )
  assert result.code == 0, result.err[-3000:]
  assert sorted(os.listdir(root)) == before
  summary = json.load(open(out / "projection.json"))
  assert summary["triples"] == [["Trouser", "Bag", "Sneaker"]] and len(summary["tightness"]) == 2
  assert "softmax undone" in summary["features_and_logits"]
  points = np.load(out / "projection_points.npz")
  key = "classifier.keras/1-8-7/train"
  # Independently: the hidden layer's activations, 1-augmented, onto the templates' plane.
  x, y = fashion_arrays(fashion_data_dir, "train", 2000)
  images = np.concatenate([x[y == c][:20] for c in (1, 8, 7)])
  hidden = keras.Model(model.inputs[0], model.layers[-2].output)
  activations = np.asarray(hidden.predict(images, verbose=0), np.float64)
  kernel, bias = (np.asarray(v, np.float64) for v in model.layers[-1].get_weights())
  templates = np.concatenate([kernel, bias[None]]).T[[1, 8, 7]]
  origin, basis = projection.plane_basis(templates)
  expected = projection.project(projection.augment(activations), origin, basis)
  np.testing.assert_allclose(points[key + "/points"], expected, rtol=1e-4, atol=1e-4)
  client = _projector_client(str(out / "tb"))
  _, tensor, metadata = _served_embedding(client, "projector")
  assert tensor.size == 30 * 32 and len(metadata) == 31
  assert metadata[0] == "label\tclass\tsplit"
  names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker"}
  assert {line.split("\t")[1] for line in metadata[1:]} <= names | {"Bag", "Ankle boot"}
  assert "ratio (plane)" in result.out and "classifier.keras | n/a" in result.out
  assert open(out / "tsne.png", "rb").read(4) == b"\x89PNG"
  maps = np.load(out / "tsne_points.npz")
  assert maps["classifier.keras/coordinates"].shape == (100, 2) and len(set(maps["indices"])) == 100
  assert summary["tsne"]["perplexity"] == 10.0 and "Bag" in maps["class_names"]


@pytest.mark.slow
def test_the_readmes_your_model_example_runs_as_written(tmp_path):
  """README "Your model": the Python block, then its two commands, verbatim, in fresh
  processes (with the data set's folder the block prepares); both write their outputs."""
  import re
  import subprocess
  import sys

  readme = open(os.path.join(REPO, "README.md")).read()
  section = readme.split("### Your model", 1)[1].split("\n## ", 1)[0]
  (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
  (commands,) = re.findall(r"```sh\n(.*?)```", section, re.S)
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO}
  done = subprocess.run(
    [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
  )
  assert done.returncode == 0, done.stderr[-3000:]
  assert (tmp_path / "my_model.keras").exists()
  lines = [line for line in commands.splitlines() if line.strip()]
  assert len(lines) == 2
  for line in lines:
    assert line.startswith("python -m ls_keras.")
    argv = [sys.executable, *line.split()[1:]]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, (line, done.stderr[-3000:])
  report = json.load(open(tmp_path / "my_model" / "calibration" / "calibration.json"))
  assert report["uncalibrated"]["accuracy"] > 0.8 and "softmax undone" in report["logits"]
  assert report["uncalibrated"]["num_examples"] == 10000
  summary = json.load(open(tmp_path / "my_model" / "projection" / "projection.json"))
  assert len(summary["triples"]) == 2
  assert (tmp_path / "my_model" / "projection" / "tb" / "projector" / "metadata.tsv").exists()


def test_the_main_jobs_cluster_claim_shows_the_baseline_beside_ls_in_t_sne(
  tiny_runs, fashion_data_dir, tmp_path
):
  """Claim 2 of the report on one seed's pair (copies of the tiny runs, listed in a results
  table as the main job lists its teachers): Figure 1 and the t-SNE maps, alpha 0 left."""
  import dataclasses
  import shutil

  from ls_keras.core import config
  from ls_keras.experiments import results
  from ls_keras.experiments.plan import Job
  from ls_keras.paper import recipes
  from ls_keras.paper.claims import clusters

  root, report = tmp_path / "runs", tmp_path / "report"
  rows = []
  for alpha in (0.0, 0.1):
    name = f"teacher_{alpha:g}"
    job = Job(name, "train", config.TrainConfig(alpha=alpha), "teacher", alpha, 0, "teacher")
    shutil.copytree(tiny_runs[alpha], root / job.name)
    metrics = {s: {"accuracy": 0.8, "nll": 0.5, "ece": 0.05} for s in results.SPLITS}
    rows.append(results.row(job, metrics, str(root)))
  preset = recipes.REPRODUCTIONS["tiny"](recipes.preset_data())
  teacher = preset.sweep.teacher.replace(data_dir=fashion_data_dir)
  preset = dataclasses.replace(
    preset, sweep=dataclasses.replace(preset.sweep, teacher=teacher), tsne_examples=150
  )
  result = clusters.evaluate(results.Table(rows), preset, str(report))
  assert result.figures == ["projection/seed_0/projection.png", "projection/seed_0/tsne.png"]
  for figure in result.figures:
    assert open(report / figure, "rb").read(4) == b"\x89PNG"
  maps = result.data["tsne"]
  assert maps["examples"] == 150 and [r["alpha"] for r in maps["runs"]] == [0.0, 0.1]
  assert "t-SNE maps of seed 0's penultimate features, 150 validation examples" in result.ours
  assert "alpha 0 left and 0.1 right" in result.ours


def test_two_runs_with_one_folder_name_are_refused_before_anything_is_written(tmp_path):
  """Outputs name each run by its folder: a second run of that name would overwrite the first."""
  from conftest import fake_run
  from ls_keras.projection import report

  runs = [fake_run(tmp_path / side / "teacher", alpha=0.0, n=50).path for side in ("a", "b")]
  with pytest.raises(UserError, match="share the name teacher") as refused:
    report.project_runs(runs, ["dissimilar"], str(tmp_path / "out"))
  assert all(path in str(refused.value) for path in runs)
  assert not (tmp_path / "out").exists()
