import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import invoke, tiny_mlp, tiny_train_args
from ls_keras import distillation, training
from ls_keras.core.errors import UserError

LABELS = np.array([[1.0, 0, 0], [0, 0, 1.0]], np.float32)
STUDENT = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.5]], np.float32)
TEACHER = np.array([[3.0, 1.0, 0.0], [-1.0, 0.0, 2.0]], np.float32)


def np_softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize(
  "temperature, beta, t_squared", [(1.0, 1.0, False), (4.0, 0.5, False), (2.0, 0.3, True)]
)
def test_loss_matches_the_papers_formula_on_known_logits(temperature, beta, t_squared):
  hard = -(LABELS * np.log(np_softmax(STUDENT))).sum(-1)
  soft = -(np_softmax(TEACHER / temperature) * np.log(np_softmax(STUDENT / temperature))).sum(-1)
  expected = (1 - beta) * hard + beta * soft * (temperature**2 if t_squared else 1.0)
  ours = distillation.distillation_loss(
    LABELS, STUDENT, TEACHER, temperature, beta, t_squared=t_squared
  )
  np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-5)


def test_beta_zero_is_plain_cross_entropy():
  ours = distillation.distillation_loss(LABELS, STUDENT, TEACHER, temperature=3.0, beta=0.0)
  plain = keras.losses.CategoricalCrossentropy(from_logits=True, reduction=None)(LABELS, STUDENT)
  np.testing.assert_allclose(ours.numpy(), plain.numpy(), rtol=1e-6)


# Agreement with Keras' own knowledge distillation (keras.distillation, Keras >= 3.12).
KERAS_KD = getattr(keras, "distillation", None)
needs_keras_kd = pytest.mark.skipif(KERAS_KD is None, reason="keras.distillation needs Keras 3.12+")
TEMPERATURES = (1.0, 2.0, 4.0, 8.0)


def _logits(seed=0, n=6, k=5):
  """Student and teacher logits [n, k] (float32) and one-hot labels, moderate enough that no
  probability falls below Keras' 1e-7 clipping at any T here."""
  rng = np.random.RandomState(seed)
  student = rng.normal(0, 2, (n, k)).astype("float32")
  teacher = rng.normal(0, 3, (n, k)).astype("float32")
  return student, teacher, np.eye(k, dtype="float32")[rng.randint(0, k, n)]


def np_teacher_entropy(teacher, temperature):
  """Mean entropy of softmax(teacher / T) in nats, in float64: the offset between the forms."""
  p = np_softmax(teacher.astype(np.float64) / temperature)
  return float(-(p * np.log(p)).sum(-1).mean())


@needs_keras_kd
@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_soft_term_agrees_with_keras_logits_distillation_up_to_the_teacher_entropy(temperature):
  """What users can conclude: on the same logits our teacher term and Keras' agree exactly
  where their definitions coincide, and differ by a constant where they do not.

  Keras (`keras.distillation.LogitsDistillation(T, loss=keras.losses.KLDivergence())`) takes
  T^2 x mean_n KL(softmax(t / T) || softmax(s / T)): KL divergence, T^2 always, mean over the
  batch. Ours (`distillation_terms(..., t_squared=True)`, mean over the batch) is T^2 x the
  cross-entropy H(softmax(t / T), softmax(s / T)) = T^2 x (KL + H(softmax(t / T))). So:
  - ours (t_squared) = Keras + T^2 x mean teacher entropy, a constant of the teacher alone;
  - ours without T^2 (the paper's form, Section 4) = Keras / T^2 + mean teacher entropy;
  - their gradients with respect to the student's logits are equal (the entropy does not
    depend on the student), so `--t_squared` trains exactly as Keras' KL distillation does,
    and the paper's form as Keras' with its rate divided by T^2.
  """
  student, teacher, labels = _logits()
  keras_kd = KERAS_KD.LogitsDistillation(temperature, loss=keras.losses.KLDivergence())
  entropy = np_teacher_entropy(teacher, temperature)
  s = tf.constant(student)
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(s)
    theirs = keras_kd.compute_loss(teacher, s)
    _, soft_t2 = distillation.distillation_terms(labels, s, teacher, temperature, t_squared=True)
    ours_t2 = tf.reduce_mean(soft_t2)
  _, soft = distillation.distillation_terms(labels, student, teacher, temperature)
  t2 = temperature**2
  assert float(ours_t2) == pytest.approx(float(theirs) + t2 * entropy, rel=1e-5)
  assert float(tf.reduce_mean(soft)) == pytest.approx(float(theirs) / t2 + entropy, rel=1e-5)
  np.testing.assert_allclose(
    tape.gradient(ours_t2, s).numpy(), tape.gradient(theirs, s).numpy(), rtol=1e-4, atol=1e-7
  )


@needs_keras_kd
@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_keras_distiller_total_loss_is_ours_less_the_entropy_and_the_weight_decay(
  temperature, one_device
):
  """The whole student loss, Keras' Distiller against ours, on the same teacher and student.

  Keras' `Distiller(student_loss_weight=w)` takes w x student loss + (1 - w) x distillation
  loss, so w = 1 - beta gives the paper's weighting (beta on the teacher term); its student
  loss here is `CategoricalCrossentropy(from_logits=True)`, mean over the batch, like our
  hard term. Two differences remain, both exact: ours adds beta x T^2 x the mean teacher
  entropy (the cross-entropy against KL, above), and ours adds the student's regularisation
  losses (weight decay), which Keras' Distiller leaves out. Gradients with respect to the
  student's weights differ by the weight decay's gradient alone.
  """
  beta = 0.7
  with one_device.scope():
    teacher, student = _tiny(0, 16), _tiny(1, 8)
    ours = distillation.Distiller(teacher, student, temperature, beta, t_squared=True)
    theirs = KERAS_KD.Distiller(
      teacher,
      student,
      KERAS_KD.LogitsDistillation(temperature, loss=keras.losses.KLDivergence()),
      student_loss_weight=1.0 - beta,
    )
    theirs.compile(optimizer="sgd", loss=keras.losses.CategoricalCrossentropy(from_logits=True))
  x, y = next(iter(_batches()))
  entropy = np_teacher_entropy(teacher(x).numpy(), temperature)
  variables = student.trainable_variables
  with tf.GradientTape(persistent=True) as tape:
    our_loss = ours.compute_loss(x=x, y=y)
    their_loss = theirs.compute_loss(x=x, y=y)
    decay = tf.add_n(student.losses)
  assert float(decay) > 0  # The student has weight decay, so that difference is visible.
  expected = float(their_loss) + beta * temperature**2 * entropy + float(decay)
  assert float(our_loss) == pytest.approx(expected, rel=1e-5)
  for ours_g, theirs_g, decay_g in zip(
    tape.gradient(our_loss, variables),
    tape.gradient(their_loss, variables),
    tape.gradient(decay, variables),
  ):
    decay_g = 0.0 if decay_g is None else decay_g.numpy()  # Biases are not decayed.
    np.testing.assert_allclose(ours_g.numpy(), theirs_g.numpy() + decay_g, rtol=1e-4, atol=1e-6)


@needs_keras_kd
def test_keras_logits_distillation_with_other_losses_is_not_the_papers_term():
  """Where Keras' definitions do not coincide with ours, and what they compute instead.

  Only a `keras.losses.KLDivergence()` instance gets softmax(. / T) and T^2 in
  LogitsDistillation (Keras 3.15: `isinstance(loss, KLDivergence)`); every other loss gets the
  tempered logits themselves. So a `CategoricalCrossentropy(from_logits=True)` takes the
  teacher's logits / T as its targets, not softmax(teacher / T): mean_n -sum_k (t_k / T) log
  softmax(s / T)_k, which can be negative. And in Keras 3.15 the default, loss="kl_divergence",
  is resolved to the function `keras.losses.kl_divergence`, which is no KLDivergence instance:
  it compares the tempered logits clipped to [1e-7, 1] as if they were probabilities, with no
  T^2. Users who want Keras' KL distillation must pass `loss=keras.losses.KLDivergence()`
  (this test fails when a Keras release changes either behaviour).
  """
  student, teacher, _ = _logits()
  for temperature in TEMPERATURES:
    ce = KERAS_KD.LogitsDistillation(
      temperature, loss=keras.losses.CategoricalCrossentropy(from_logits=True)
    ).compute_loss(teacher, student)
    log_p = np.log(np_softmax(student.astype(np.float64) / temperature))
    expected = float(np.mean(-(teacher / temperature * log_p).sum(-1)))
    assert float(ce) == pytest.approx(expected, rel=1e-5)
    default = KERAS_KD.LogitsDistillation(temperature).compute_loss(teacher, student)
    clipped_t = np.clip(teacher.astype(np.float64) / temperature, 1e-7, 1)
    clipped_s = np.clip(student.astype(np.float64) / temperature, 1e-7, 1)
    raw = float(np.mean((clipped_t * np.log(clipped_t / clipped_s)).sum(-1)))
    assert float(default) == pytest.approx(raw, rel=1e-4)
    kl = KERAS_KD.LogitsDistillation(temperature, loss=keras.losses.KLDivergence())
    assert abs(float(default) - float(kl.compute_loss(teacher, student))) > 0.1
  assert float(ce) < 0  # Not a cross-entropy between distributions.


@pytest.mark.parametrize("beta", [0.6, 1.0, 0.0])
def test_logit_matching_student_loss_is_the_appendix_formula(beta):
  """Appendix A.5's student: (1 - beta) hard cross-entropy + beta (1/2) sum_k (s_k - t_k)^2,
  beta on the teacher term as in Section 4's loss (the paper: beta 0.6, so 0.4 x cross-entropy +
  0.6 x half the squared error). Its gradient per logit is (1 - beta)(p - y) + beta (s - t)."""
  hard = -(LABELS * np.log(np_softmax(STUDENT))).sum(-1)
  half_squared = 0.5 * ((STUDENT - TEACHER) ** 2).sum(-1)
  s = tf.constant(STUDENT)
  with tf.GradientTape() as tape:
    tape.watch(s)
    ours = distillation.distillation_loss(
      LABELS, s, TEACHER, 4.0, beta, teacher_term="logit_matching"
    )
    total = tf.reduce_sum(ours)
  np.testing.assert_allclose(ours.numpy(), (1 - beta) * hard + beta * half_squared, rtol=1e-5)
  gradient = (1 - beta) * (np_softmax(STUDENT) - LABELS) + beta * (STUDENT - TEACHER)
  np.testing.assert_allclose(tape.gradient(total, s).numpy(), gradient, rtol=1e-5, atol=1e-6)
  # Half the squared error summed over the K classes: K/2 x Keras' mean squared error.
  mse = keras.losses.MeanSquaredError(reduction=None)(TEACHER, STUDENT).numpy()
  np.testing.assert_allclose(distillation.logit_matching(STUDENT, TEACHER).numpy(), 1.5 * mse)


def test_logit_matching_distiller_loss_is_the_formula_plus_weight_decay(one_device):
  with one_device.scope():
    teacher, student = _tiny(0, 16), _tiny(1, 8)
    distiller = distillation.Distiller(
      teacher, student, beta=0.6, teacher_term="logit_matching", name="logit_matching"
    )
  x, y = next(iter(_batches()))
  s, t, y = student(x).numpy(), teacher(x).numpy(), y.numpy()
  per_example = -0.4 * (y * np.log(np_softmax(s))).sum(-1) + 0.6 * 0.5 * ((s - t) ** 2).sum(-1)
  expected = float(per_example.mean()) + float(sum(student.losses))
  assert float(distiller.compute_loss(x=x, y=tf.constant(y))) == pytest.approx(expected, rel=1e-5)


def test_logit_matching_has_no_temperature_to_square():
  with pytest.raises(UserError, match="--t_squared is not allowed with --teacher_term=logit"):
    distillation.distillation_terms(
      LABELS, STUDENT, TEACHER, 2.0, t_squared=True, teacher_term="logit_matching"
    )
  with pytest.raises(UserError, match="--teacher_term=kl is not allowed"):
    distillation.distillation_loss(LABELS, STUDENT, TEACHER, 2.0, 0.5, teacher_term="kl")
  model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3)])
  with pytest.raises(UserError, match="--t_squared is not allowed"):
    distillation.Distiller(model, model, t_squared=True, teacher_term="logit_matching")


def test_equivalent_smoothing_is_0_for_one_hot_and_1_for_uniform_teachers():
  labels = np.array([0, 2, 1])
  assert distillation.equivalent_smoothing(np.eye(3)[labels] * 1000.0, labels, 1.0) == 0.0
  assert distillation.equivalent_smoothing(np.zeros((3, 3)), labels, 1.0) == pytest.approx(1.0)
  # A label-smoothed target distribution gives back its alpha: log-probabilities as logits.
  alpha = 0.3
  targets = np.eye(3)[labels] * (1 - alpha) + alpha / 3
  assert distillation.equivalent_smoothing(np.log(targets), labels, 1.0) == pytest.approx(alpha)
  # Temperature softens the teacher: gamma grows with T.
  logits = np.random.RandomState(0).normal(0, 3, (50, 3))
  gammas = [distillation.equivalent_smoothing(logits, np.zeros(50, int), t) for t in (1, 2, 4, 8)]
  assert gammas == sorted(gammas)


def _tiny(seed, hidden):
  return tiny_mlp(hidden, 1e-3, seed)


def _batches(ctx=None):
  rng = np.random.RandomState(0)
  x = rng.uniform(0, 255, (48, 6, 6, 1)).astype("float32")
  y = np.eye(3, dtype="float32")[rng.randint(0, 3, 48)]
  return tf.data.Dataset.from_tensor_slices((x, y)).batch(
    ctx.get_per_replica_batch_size(8) if ctx else 8
  )


def _distil(strategy, steps=3):
  with strategy.scope():
    teacher, student = _tiny(0, 16), _tiny(1, 8)
    distiller = distillation.Distiller(teacher, student, temperature=2.0, beta=0.7, alpha=0.1)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    distiller.optimizer.build(distiller.trainable_variables)
  teacher_before = [w.copy() for w in teacher.get_weights()]
  student_before = [w.copy() for w in student.get_weights()]
  logs = training.Loop(distiller, strategy).train(
    iter(strategy.distribute_datasets_from_function(_batches)), steps
  )
  return distiller, teacher_before, student_before, logs


def test_teacher_is_bit_identical_and_only_the_student_learns(one_device):
  distiller, teacher_before, student_before, logs = _distil(one_device)
  for before, after in zip(teacher_before, distiller.teacher.get_weights()):
    np.testing.assert_array_equal(before, after)
  assert any(
    not np.array_equal(b, a) for b, a in zip(student_before, distiller.student.get_weights())
  )
  assert {"loss", "accuracy", "hard_loss", "soft_loss"} <= set(logs)
  assert {v.name for v in distiller.trainable_variables} == {
    v.name for v in distiller.student.trainable_variables
  }


def test_two_replicas_give_the_same_loss_and_updates_as_one_device(one_device, mirrored):
  one, _, _, one_logs = _distil(one_device)
  two, _, _, two_logs = _distil(mirrored)
  assert one_logs["loss"] == pytest.approx(two_logs["loss"], rel=1e-5)
  for a, b in zip(one.student.get_weights(), two.student.get_weights()):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_first_step_loss_is_the_formula_plus_student_weight_decay(one_device):
  strategy = one_device
  with strategy.scope():
    teacher, student = _tiny(0, 16), _tiny(1, 8)
    distiller = distillation.Distiller(teacher, student, temperature=2.0, beta=0.7)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0))
    distiller.optimizer.build(distiller.trainable_variables)
  x, y = next(iter(_batches()))
  expected = float(np.mean(distillation.distillation_loss(y, student(x), teacher(x), 2.0, 0.7)))
  expected += float(sum(student.losses))
  logs = training.Loop(distiller, strategy).train(
    iter(strategy.distribute_datasets_from_function(_batches)), 1
  )
  assert logs["loss"] == pytest.approx(expected, rel=1e-5)


@pytest.fixture(scope="module")
def student_run(tiny_runs, fashion_data_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("kd") / "student")
  args = tiny_train_args(fashion_data_dir, workdir, "--model=mlp", "--hidden_units=64,64")
  result = invoke("distill", f"--teacher={tiny_runs[0.1]}", "--temperature=2", "--beta=1", *args)
  assert result.code == 0, result.err[-3000:]
  return workdir


def test_distill_cli_trains_a_student_and_records_gamma(student_run, tiny_runs):
  metrics = json.load(open(os.path.join(student_run, "metrics.json")))
  assert metrics["validation"]["accuracy"] >= 0.65
  assert (
    0.1 < metrics["equivalent_smoothing"] < 1.0
  )  # An alpha = 0.1 teacher at T = 2 is smoother than 0.1.
  assert metrics["teacher"] == os.path.abspath(tiny_runs[0.1])
  record = json.load(open(os.path.join(student_run, "config.json")))
  assert record["kind"] == "distill" and record["config"]["temperature"] == 2.0


def test_teacher_can_be_an_exported_saved_model(tiny_runs, fashion_data_dir, tmp_path):
  workdir = str(tmp_path / "student")
  args = tiny_train_args(
    fashion_data_dir,
    workdir,
    "--model=mlp",
    "--hidden_units=16",
    "--epochs=1",
    "--train_examples=1024",
  )
  teacher = f"--teacher={os.path.join(tiny_runs[0.0], 'saved_model')}"
  result = invoke("distill", teacher, "--trust_saved_model", *args)
  assert result.code == 0, result.err[-3000:]
  metrics = json.load(open(os.path.join(workdir, "metrics.json")))
  assert (
    metrics["teacher_train_accuracy"] >= 0.7
  )  # The SavedModel's logits really are the teacher's.
  assert 0.0 < metrics["equivalent_smoothing"] < 1.0


FRESH = r"""
import sys, numpy as np, keras
model = keras.saving.load_model(sys.argv[1], safe_mode=True)  # Plain Keras, as the README says.
np.save(sys.argv[3], model(np.load(sys.argv[2]), training=False).numpy())
assert not any(m.startswith("ls_keras") for m in sys.modules)
"""


@pytest.mark.slow
def test_exported_student_alone_reloads_with_the_same_logits(student_run, tmp_path):
  import subprocess
  import sys
  from ls_keras.models import export

  student = export.load_keras_model(os.path.join(student_run, "model.keras"))
  assert (
    student.name == "mlp" and student.get_layer("logits").units == 10
  )  # The student, no teacher inside.
  images = np.random.RandomState(0).uniform(0, 255, (16, 28, 28, 1)).astype("float32")
  np.save(tmp_path / "x.npy", images)
  subprocess.run(
    [
      sys.executable,
      "-c",
      FRESH,
      os.path.join(student_run, "model.keras"),
      str(tmp_path / "x.npy"),
      str(tmp_path / "y.npy"),
    ],
    check=True,
    env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
  )
  np.testing.assert_allclose(
    np.load(tmp_path / "y.npy"), student(images, training=False).numpy(), rtol=1e-6, atol=1e-6
  )


def test_same_seed_students_share_their_initialisation_whatever_the_teacher_format(
  tiny_runs, fashion_data_dir
):
  """Loading a teacher (either format) must not move the random stream the student draws from."""
  from ls_keras.core import config as config_lib

  config = config_lib.DistillConfig(
    model="mlp",
    hidden_units=(16,),
    seed=3,
    data_dir=fashion_data_dir,
    train_examples=1024,
    eval_examples=500,
    precision="float32",
    teacher=tiny_runs[0.0],
  )
  splits = training.load_data(config)
  initial = []
  for teacher in (tiny_runs[0.0], os.path.join(tiny_runs[0.0], "saved_model"), None):
    if teacher:
      distillation.load_teacher(teacher, trust_saved_model=True)
    initial.append(training.build_network(config, splits).get_weights())
  direct = training.build_network(
    config_lib.TrainConfig(
      **{
        k: v for k, v in config.__dict__.items() if k in config_lib.TrainConfig.__dataclass_fields__
      }
    ),
    splits,
  ).get_weights()
  for weights in initial[1:] + [direct]:
    for a, b in zip(initial[0], weights):
      np.testing.assert_array_equal(a, b)


def test_a_savedmodel_teacher_needs_trust_and_a_workdir_is_read_through_its_keras_file(tmp_path):
  """A SavedModel runs its own graph (code); a workdir's model.keras loads in safe mode."""
  from ls_keras.core.errors import UserError

  run = tmp_path / "run"
  (run / "saved_model").mkdir(parents=True)
  (run / "model.keras").write_bytes(b"")
  (run / "saved_model" / "saved_model.pb").write_bytes(b"")
  assert distillation.teacher_format(str(run)) == "workdir"  # Never its SavedModel.
  assert distillation.teacher_format(str(run / "model.keras")) == "keras"
  with pytest.raises(UserError, match="--trust_saved_model") as e:
    distillation.teacher_format(str(run / "saved_model"))
  assert "code" in str(e.value) and ".keras" in str(e.value)
  assert distillation.teacher_format(str(run / "saved_model"), trust_saved_model=True) == (
    "saved_model"
  )


@pytest.mark.parametrize(
  "head",
  [
    lambda: [keras.layers.Dense(3, activation="softmax")],
    lambda: [keras.layers.Dense(3), keras.layers.Softmax()],
  ],
  ids=["dense_softmax", "softmax_layer"],
)
def test_a_teacher_ending_in_a_softmax_is_refused(head):
  """Its outputs are probabilities: softmax(teacher / T) of them would be a wrong target."""
  teacher = keras.Sequential([keras.Input((4,)), *head()], name="probs_teacher")
  student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
  with pytest.raises(UserError, match="teacher 'probs_teacher' ends in a softmax.*pre-softmax"):
    distillation.Distiller(teacher, student, temperature=2.0)
  logits_teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
  distillation.Distiller(logits_teacher, student, temperature=2.0)  # Logits: accepted.


def test_equivalent_smoothing_refuses_teacher_probabilities():
  probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
  with pytest.raises(UserError, match="teacher logits look like probabilities"):
    distillation.equivalent_smoothing(probs, [0, 1], 2.0)
  assert distillation.equivalent_smoothing(np.log(probs), [0, 1], 1.0) == pytest.approx(
    (0.3 + 0.2) / 2 * 3 / 2
  )
