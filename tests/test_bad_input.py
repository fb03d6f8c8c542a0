"""Every way a user can hand bad input to each command, and what happens.

One row per case: the command, the state of the path it is pointed at ({target}), its
flags, and a fragment the one-paragraph error must contain. Each row asserts exit code 2,
that message (naming the bad value), no traceback (any other exception fails the test),
and that nothing on disk changed (a hash of the whole test folder before and after).
The console contract (a real process, exit status 2) is tests/test_train.py's.
"""

import dataclasses
import json
import os
import shutil
import zipfile

import keras
import numpy as np
import pytest
from absl import flags
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import invoke, tiny_train_args, tree_hash
from ls_keras import cli
from ls_keras.core import config as config_lib
from ls_keras import training
from ls_keras.core import checkpoints
from ls_keras.core.errors import UserError


@dataclasses.dataclass(frozen=True)
class Case:
  command: str
  state: str  # What {target} holds before the command runs; see STATES.
  args: tuple  # Flags, with {target}, {run} (a finished run), {out}, {tmp}, {data} (prepared data).
  message: str  # Must appear in the error.


TRAIN = ("--workdir={target}",)
OUT = ("--output_dir={out}",)
# A tiny run on the user's data at {target} (an .npz file or an image folder).
MINE = (
  "--workdir={tmp}/mine",
  "--validation_size=10",
  "--model=mlp",
  "--hidden_units=16",
  "--epochs=1",
  "--precision=float32",
  "--strategy=one_device",
)
NPZ = MINE + ("--dataset=npz:{target}",)
FOLDER = MINE + ("--dataset=folder:{target}",)

CASES = {
  # train: flags.
  "alpha above 1": Case("train", "missing", TRAIN + ("--alpha=1.5",), "--alpha=1.5"),
  "alpha negative": Case("train", "missing", TRAIN + ("--alpha=-0.1",), "--alpha=-0.1"),
  "alpha nan": Case("train", "missing", TRAIN + ("--alpha=nan",), "--alpha=nan"),
  "learning rate inf": Case("train", "missing", TRAIN + ("--learning_rate=inf",), "finite"),
  "learning rate 0": Case("train", "missing", TRAIN + ("--learning_rate=0",), "--learning_rate=0"),
  "unknown data set": Case("train", "missing", TRAIN + ("--dataset=svhn",), "svhn"),
  "unknown model": Case("train", "missing", TRAIN + ("--model=vgg",), "--model=vgg"),
  "unknown strategy": Case("train", "missing", TRAIN + ("--strategy=tpu",), "tpu"),
  "unknown precision": Case("train", "missing", TRAIN + ("--precision=fp8",), "fp8"),
  "batch 0": Case("train", "missing", TRAIN + ("--batch_size=0",), "--batch_size=0"),
  "epochs 0": Case("train", "missing", TRAIN + ("--epochs=0",), "--epochs=0"),
  "steps negative": Case("train", "missing", TRAIN + ("--train_steps=-1",), "--train_steps=-1"),
  "steps beyond int32": Case("train", "missing", TRAIN + ("--train_steps=9999999999",), "at most"),
  "boundaries decreasing": Case(
    "train", "missing", TRAIN + ("--lr_boundaries=0.8,0.6",), "--lr_boundaries=0.8,0.6"
  ),
  "boundaries beyond training": Case(
    "train", "missing", TRAIN + ("--lr_boundaries=0.5,2",), "in (0, 1)"
  ),
  "boundaries not numbers": Case(
    "train", "missing", TRAIN + ("--lr_boundaries=a,b",), "--lr_boundaries=a,b"
  ),
  "hidden units 0": Case("train", "missing", TRAIN + ("--hidden_units=0",), "--hidden_units=0"),
  "hidden units huge": Case(
    "train", "missing", TRAIN + ("--hidden_units=10000000",), "--hidden_units=10000000"
  ),
  "momentum 1": Case("train", "missing", TRAIN + ("--momentum=1",), "--momentum=1"),
  "dropout 1": Case("train", "missing", TRAIN + ("--dropout=1",), "--dropout=1"),
  "decay above 1": Case("train", "missing", TRAIN + ("--lr_decay=2",), "--lr_decay=2"),
  "unknown schedule": Case("train", "missing", TRAIN + ("--lr_schedule=cosine",), "cosine"),
  "dampening 1": Case("train", "missing", TRAIN + ("--dampening=1",), "--dampening=1"),
  "dampening negative": Case("train", "missing", TRAIN + ("--dampening=-0.1",), "--dampening=-0.1"),
  "last layer rate 0": Case(
    "train", "missing", TRAIN + ("--last_layer_lr_scale=0",), "--last_layer_lr_scale=0"
  ),
  "last layer rate nan": Case(
    "train", "missing", TRAIN + ("--last_layer_lr_scale=nan",), "--last_layer_lr_scale=nan"
  ),
  "seed negative": Case("train", "missing", TRAIN + ("--seed=-1",), "--seed=-1"),
  "too many cpu devices": Case(
    "train", "missing", TRAIN + ("--cpu_devices=1000",), "--cpu_devices=1000"
  ),
  "mi classes equal": Case("train", "missing", TRAIN + ("--mi_classes=3,3",), "--mi_classes=3,3"),
  "mi one copy": Case(
    "train", "missing", TRAIN + ("--mi_augmentations=1",), "--mi_augmentations=1"
  ),
  "misspelt flag": Case("train", "missing", TRAIN + ("--alhpa=0.1",), "alhpa"),
  # train: data, and settings only the data can refuse (checked before anything is written).
  "data set not prepared": Case(
    "train",
    "missing",
    TRAIN + ("--dataset=cifar10", "--data_dir={tmp}/nodata", "--nodownload"),
    "tfds build cifar10",
  ),
  # train: your data (issue 20).
  "npz missing": Case("train", "missing", NPZ, "npz:{target}: no such file"),
  "npz not arrays": Case("train", "file", NPZ, "cannot be read as .npz arrays"),
  "npz lacks y_train": Case(
    "train",
    "npz_no_labels",
    NPZ,
    "it holds class_names, x_test, x_train, y_test; give x_train and y_train",
  ),
  "npz one class": Case("train", "npz_one_class", NPZ, "npz:{target}: it has 1 class"),
  "npz labels out of range": Case(
    "train", "npz_label_out_of_range", NPZ, "y_train holds labels from 0 to 7, but there are 5"
  ),
  "npz negative labels": Case("train", "npz_negative_label", NPZ, "holds labels from -1 to"),
  "npz lengths differ": Case(
    "train", "npz_mismatched", NPZ, "x_train has 100 images but y_train 90 labels"
  ),
  "npz not images": Case("train", "npz_not_images", NPZ, "x_train has shape (100, 10)"),
  "npz pixels in [0, 1]": Case("train", "npz_unit_floats", NPZ, "multiply by 255"),
  "npz one-hot labels": Case("train", "npz_one_hot", NPZ, "not one-hot vectors"),
  "npz class without examples": Case(
    "train", "npz_empty_class", NPZ, "class 'e' has no training examples"
  ),
  "npz validation takes all": Case(
    "train", "npz_ok", NPZ + ("--validation_size=10000",), "--validation_size=10000"
  ),
  "npz too few for mi": Case(
    "train",
    "npz_ok",
    NPZ
    + ("--batch_size=16", "--mi_every_steps=4", "--mi_classes=0,1", "--mi_examples_per_class=500"),
    "too few examples",
  ),
  "folder missing": Case("train", "missing", FOLDER, "folder:{target}: no such folder"),
  "folder empty": Case("train", "empty", FOLDER, "it holds no images in class subfolders"),
  "folder without images": Case(
    "train", "folder_no_images", FOLDER, "it holds no images in class subfolders"
  ),
  "folder one class": Case("train", "folder_one_class", FOLDER, "it has 1 class"),
  "folder unreadable image": Case(
    "train", "folder_unreadable", FOLDER, "{target}/train/b/broken.png cannot be decoded"
  ),
  "folder mixed channels": Case(
    "train", "folder_mixed_channels", FOLDER, "mixed or unsupported channel counts"
  ),
  "folder varying sizes": Case("train", "folder_varying_sizes", FOLDER, "--image_size=N"),
  "folder class of one image": Case(
    "train", "folder_tiny_class", FOLDER, "class 'b' has 1 example"
  ),
  "folder stray split": Case("train", "folder_stray_split", FOLDER, "also valid/"),
  "no fashion-mnist files": Case(
    "train",
    "missing",
    TRAIN + ("--data_dir={tmp}/tfds", "--fashion_mnist_source={tmp}/nothing"),
    "apt-get install dataset-fashion-mnist",
  ),
  "validation takes all": Case(
    "train", "missing", ("{base}", "--validation_size=70000"), "--validation_size=70000"
  ),
  "batch above examples": Case(
    "train", "missing", ("{base}", "--batch_size=2000"), "--batch_size=2000"
  ),
  "linear schedule with boundaries": Case(
    "train",
    "missing",
    ("{base}", "--lr_schedule=linear", "--lr_boundaries=0.5"),
    "--lr_boundaries=0.5 is not allowed with --lr_schedule=linear",
  ),
  "last layer rate with adam": Case(
    "train",
    "missing",
    ("{base}", "--optimizer=adam", "--last_layer_lr_scale=0.1"),
    "--last_layer_lr_scale=0.1 is not allowed with --optimizer=adam",
  ),
  "dampening with adam": Case(
    "train",
    "missing",
    ("{base}", "--optimizer=adam", "--dampening=0.9"),
    "--dampening=0.9 is not allowed with --optimizer=adam",
  ),
  "dampening with nesterov": Case(
    "train",
    "missing",
    ("{base}", "--optimizer=sgd", "--nesterov", "--dampening=0.9"),
    "--dampening=0.9 is not allowed with --nesterov",
  ),
  "batch odd on 2 replicas": Case(
    "train", "missing", ("{base}", "--strategy=mirrored", "--batch_size=127"), "multiple of 2"
  ),
  "mi class out of range": Case(
    "train", "missing", ("{base}", "--mi_every_steps=4", "--mi_classes=2,12"), "must lie in 0-9"
  ),
  "mi too many examples": Case(
    "train",
    "missing",
    ("{base}", "--mi_every_steps=4", "--mi_examples_per_class=9000"),
    "too few examples",
  ),
  # train: the workdir in every state.
  "workdir is a file": Case("train", "file", ("{base}",), "is a file"),
  "workdir under a file": Case("train", "under_file", ("{base}",), "cannot be created"),
  "foreign folder": Case(
    "train", "foreign", ("{base}",), "not an ls_keras workdir (it holds notes.txt)"
  ),
  "another tool's config.json, overwrite": Case(
    "train", "foreign_config", ("{base}", "--overwrite"), "not an ls_keras run config"
  ),
  "garbled config, overwrite": Case(
    "train", "corrupt_config", ("{base}", "--overwrite"), "will not delete"
  ),
  "workdir a dangling link": Case(
    "train", "dangling_link", ("{base}",), "symbolic link to nothing"
  ),
  "teacher inside the workdir": Case(
    "distill",
    "finished",
    ("{base}", "--teacher={target}", "--overwrite"),
    "replace its own teacher",
  ),
  "calibrate into a run": Case(
    "calibrate", "finished", ("--workdir={run}", "--output_dir={target}"), "is an ls_keras workdir"
  ),
  "mi plot into its own run": Case(
    "mutual_info",
    "finished",
    ("--workdir={target}", "--output_dir={target}"),
    "is an ls_keras workdir",
  ),
  "sweep root is a run": Case(
    "kd_sweep", "finished", ("--preset=tiny", "--root={target}"), "is an ls_keras workdir"
  ),
  "foreign folder, overwrite": Case(
    "train", "foreign", ("{base}", "--overwrite"), "never writes into or deletes"
  ),
  "another run": Case(
    "train", "finished", ("{base}", "--alpha=0.3"), "settings that differ: alpha"
  ),
  "another kind of run": Case(
    "distill", "finished", ("{base}", "--teacher={run}"), "different train run"
  ),
  "garbled config": Case("train", "corrupt_config", ("{base}",), "not valid JSON"),
  "config not a record": Case("train", "not_a_record", ("{base}",), "not an ls_keras run config"),
  "other version": Case("train", "other_version", ("{base}",), "incompatible ls_keras"),
  "truncated checkpoint": Case("train", "truncated_checkpoint", ("{base}",), "cannot be restored"),
  # distill: teachers.
  "no teacher": Case("distill", "missing", ("{student}",), "--teacher is required"),
  "teacher missing": Case(
    "distill", "missing", ("{student}", "--teacher={target}"), "neither a finished"
  ),
  "teacher unfinished": Case(
    "distill", "unfinished_no_model", ("{student}", "--teacher={target}"), "neither a finished"
  ),
  "teacher truncated .keras": Case(
    "distill",
    "truncated_keras",
    ("{student}", "--teacher={target}/model.keras"),
    "truncated, corrupt or not a Keras model",
  ),
  "teacher truncated SavedModel": Case(
    "distill",
    "truncated_saved_model",
    ("{student}", "--teacher={target}/saved_model", "--trust_saved_model"),
    "truncated or corrupt",
  ),
  "teacher SavedModel untrusted": Case(
    "distill", "finished", ("{student}", "--teacher={target}/saved_model"), "--trust_saved_model"
  ),
  "teacher zip bomb": Case(
    "distill", "zip_bomb", ("{student}", "--teacher={target}/model.keras"), "zip bomb"
  ),
  "teacher other inputs": Case(
    "distill", "cifar_teacher", ("{student}", "--teacher={target}"), "inputs of shape (32, 32, 3)"
  ),
  "teacher other classes": Case(
    "distill", "five_class_teacher", ("{student}", "--teacher={target}"), "predicts 5 classes"
  ),
  "teacher NaN weights": Case(
    "distill", "nan_teacher", ("{student}", "--teacher={target}"), "NaN or infinite logits"
  ),
  "temperature 0": Case(
    "distill", "missing", ("{student}", "--teacher={run}", "--temperature=0"), "--temperature=0"
  ),
  "temperature nan": Case(
    "distill", "missing", ("{student}", "--teacher={run}", "--temperature=nan"), "--temperature=nan"
  ),
  "beta above 1": Case(
    "distill", "missing", ("{student}", "--teacher={run}", "--beta=1.5"), "--beta=1.5"
  ),
  "unknown teacher term": Case(
    "distill", "missing", ("{student}", "--teacher={run}", "--teacher_term=kl"), "kl"
  ),
  "T^2 with logit matching": Case(
    "distill",
    "missing",
    ("{student}", "--teacher={run}", "--teacher_term=logit_matching", "--t_squared"),
    "--t_squared is not allowed with --teacher_term=logit_matching",
  ),
  # calibrate.
  "calibrate nothing": Case("calibrate", "missing", OUT, "at least one --workdir"),
  "calibrate missing": Case(
    "calibrate", "missing", OUT + ("--workdir={target}",), "does not exist"
  ),
  "calibrate foreign": Case(
    "calibrate", "foreign", OUT + ("--workdir={target}",), "not an ls_keras workdir"
  ),
  "calibrate unfinished": Case(
    "calibrate", "unfinished", OUT + ("--workdir={target}",), "unfinished"
  ),
  "calibrate other version": Case(
    "calibrate", "other_version", OUT + ("--workdir={target}",), "incompatible ls_keras"
  ),
  "calibrate NaN logits": Case(
    "calibrate", "nan_logits", OUT + ("--workdir={target}",), "NaN or infinite"
  ),
  "calibrate short labels": Case(
    "calibrate", "short_labels", OUT + ("--workdir={target}",), "500 logits but 495 labels"
  ),
  "calibrate corrupt logits": Case(
    "calibrate", "corrupt_logits", OUT + ("--workdir={target}",), "is corrupt"
  ),
  "calibrate second run bad": Case(
    "calibrate", "nan_logits", OUT + ("--workdir={run}", "--workdir={target}"), "NaN or infinite"
  ),
  "calibrate 0 bins": Case(
    "calibrate", "missing", OUT + ("--workdir={run}", "--num_bins=0"), "--num_bins=0"
  ),
  "calibrate negative resamples": Case(
    "calibrate", "missing", OUT + ("--workdir={run}", "--num_resamples=-1"), "--num_resamples=-1"
  ),
  "calibrate output is a file": Case(
    "calibrate", "file", ("--workdir={run}", "--output_dir={target}"), "is a file"
  ),
  # calibrate and project: a model file trained anywhere (issue 20).
  "calibrate model file missing": Case(
    "calibrate",
    "missing",
    OUT + ("--model_file={target}.keras", "--dataset=fashion_mnist", "--data_dir={data}"),
    "--model_file={target}.keras does not exist",
  ),
  "calibrate workdir and model file": Case(
    "calibrate",
    "missing",
    OUT + ("--workdir={run}", "--model_file={run}/model.keras", "--dataset=fashion_mnist"),
    "were both given",
  ),
  "calibrate model file without data set": Case(
    "calibrate", "missing", OUT + ("--model_file={run}/model.keras",), "needs --dataset=NAME"
  ),
  "calibrate data set without model file": Case(
    "calibrate",
    "missing",
    OUT + ("--workdir={run}", "--dataset=mnist"),
    "--dataset apply only with --model_file",
  ),
  "calibrate model file SavedModel untrusted": Case(
    "calibrate",
    "missing",
    OUT + ("--model_file={run}/saved_model", "--dataset=fashion_mnist", "--data_dir={data}"),
    "Pass --trust_saved_model if you trust its author",
  ),
  "calibrate model file not a model": Case(
    "calibrate",
    "missing",
    OUT + ("--model_file={run}/config.json", "--dataset=fashion_mnist", "--data_dir={data}"),
    "is neither a .keras file nor a SavedModel",
  ),
  "calibrate model file truncated": Case(
    "calibrate",
    "truncated_keras",
    OUT + ("--model_file={target}/model.keras", "--dataset=fashion_mnist", "--data_dir={data}"),
    "truncated, corrupt or not a Keras model",
  ),
  "calibrate model file other inputs": Case(
    "calibrate",
    "cifar_teacher",
    OUT + ("--model_file={target}", "--dataset=fashion_mnist", "--data_dir={data}"),
    "takes images of shape (32, 32, 3), but --dataset=fashion_mnist has images of shape "
    "(28, 28, 1)",
  ),
  "calibrate model file other classes": Case(
    "calibrate",
    "five_class_teacher",
    OUT + ("--model_file={target}", "--dataset=fashion_mnist", "--data_dir={data}"),
    "scores 5 classes, but --dataset=fashion_mnist has 10",
  ),
  "calibrate model file unknown logits layer": Case(
    "calibrate",
    "missing",
    OUT
    + (
      "--model_file={run}/model.keras",
      "--dataset=fashion_mnist",
      "--data_dir={data}",
      "--logits_layer=scores",
    ),
    "--logits_layer=scores is not a layer",
  ),
  "calibrate model file outputs probabilities": Case(
    "calibrate",
    "softmax_teacher",
    OUT
    + (
      "--model_file={target}",
      "--dataset=fashion_mnist",
      "--data_dir={data}",
      "--logits_layer=out",
      "--eval_examples=100",
    ),
    "look like probabilities, not logits: on the validation split",
  ),
  "calibrate model file data not prepared": Case(
    "calibrate",
    "missing",
    OUT + ("--model_file={run}/model.keras", "--dataset=fashion_mnist", "--data_dir={tmp}/no"),
    "not prepared",
  ),
  "project model file SavedModel": Case(
    "project",
    "missing",
    OUT
    + (
      "--model_file={run}/saved_model",
      "--trust_saved_model",
      "--dataset=fashion_mnist",
      "--data_dir={data}",
    ),
    "its layers cannot be read",
  ),
  "project model file unknown penultimate layer": Case(
    "project",
    "missing",
    OUT
    + (
      "--model_file={run}/model.keras",
      "--dataset=fashion_mnist",
      "--data_dir={data}",
      "--penultimate_layer=features",
    ),
    "--penultimate_layer=features is not a layer",
  ),
  "project model file and workdir": Case(
    "project",
    "missing",
    OUT + ("--workdir={run}", "--model_file={run}/model.keras", "--dataset=fashion_mnist"),
    "were both given",
  ),
  "teacher outputs probabilities": Case(  # A softmax hidden behind another layer.
    "distill",
    "softmax_teacher",
    ("{student}", "--teacher={target}"),
    "--teacher={target} outputs probabilities, not logits",
  ),
  # project.
  "project unknown class": Case(
    "project",
    "missing",
    OUT + ("--workdir={run}", "--data_dir={data}", "--classes=Trouser,Bag,Poodle"),
    "unknown class 'Poodle'",
  ),
  "project repeated class": Case(
    "project",
    "missing",
    OUT + ("--workdir={run}", "--data_dir={data}", "--classes=1,1,2"),
    "exactly 3 distinct",
  ),
  "project 0 examples": Case(
    "project",
    "missing",
    OUT + ("--workdir={run}", "--examples_per_class=0"),
    "--examples_per_class=0",
  ),
  "project truncated model": Case(
    "project",
    "truncated_keras",
    OUT + ("--workdir={target}", "--classes=0,1,2"),
    "truncated, corrupt or not a Keras model",
  ),
  "project output is a file": Case(
    "project", "file", ("--workdir={run}", "--output_dir={target}"), "is a file"
  ),
  "project zip bomb model": Case(
    "project",
    "zip_bomb",
    OUT + ("--workdir={target}", "--data_dir={data}", "--classes=0,1,2"),
    "zip bomb",
  ),
  "project data not in --data_dir": Case(
    "project",
    "data_elsewhere",
    OUT + ("--workdir={target}", "--data_dir={tmp}/nodata", "--classes=0,1,2"),
    "pass --data_dir={tmp}/elsewhere",
  ),
  "project tsne perplexity above a third of the examples": Case(
    "project",
    "missing",
    OUT + ("--workdir={run}", "--tsne", "--tsne_examples=100", "--tsne_perplexity=40"),
    "--tsne_perplexity=40 must lie in [1, 33] for 100 points",
  ),
  "project tsne perplexity nan": Case(
    "project", "missing", OUT + ("--workdir={run}", "--tsne", "--tsne_perplexity=nan"), "=nan"
  ),
  "project tsne perplexity too high for the validation split": Case(  # 500 examples there.
    "project",
    "missing",
    OUT
    + (
      "--workdir={run}",
      "--data_dir={data}",
      "--examples_per_class=20",
      "--tsne",
      "--tsne_perplexity=200",
    ),
    "--tsne_perplexity=200 must lie in [1, 166.333] for 500 points",
  ),
  "project tsne 3 examples": Case(
    "project",
    "missing",
    OUT + ("--workdir={run}", "--tsne", "--tsne_examples=3"),
    "--tsne_examples=3 must be at least 4",
  ),
  "project tsne fewer examples than classes": Case(
    "project",
    "missing",
    OUT
    + (
      "--workdir={run}",
      "--data_dir={data}",
      "--examples_per_class=20",
      "--tsne",
      "--tsne_examples=5",
    ),
    "--tsne_examples=5 is not allowed here: the validation split holds 10 classes",
  ),
  "project tsne settings without --tsne": Case(
    "project",
    "missing",
    OUT + ("--workdir={run}", "--tsne_examples=500"),
    "--tsne_examples apply only with --tsne",
  ),
  "project config lacks dataset": Case(
    "project",
    "no_dataset",
    OUT + ("--workdir={target}", "--data_dir={data}"),
    'lacks the setting "dataset"',
  ),
  # Corrupt analysis inputs.
  "calibrate string alpha": Case(
    "calibrate", "string_alpha", OUT + ("--workdir={target}",), 'setting "alpha" is "0.1"'
  ),
  "calibrate hidden units not numbers": Case(
    "calibrate", "string_hidden_units", OUT + ("--workdir={target}",), '"hidden_units" is ["16"]'
  ),
  "calibrate test of 3 classes": Case(
    "calibrate",
    "three_class_test",
    OUT + ("--workdir={target}",),
    "shape (500, 10) but {target}/logits/test.npz (500, 3)",
  ),
  "calibrate logits not numbers": Case(
    "calibrate", "string_logits", OUT + ("--workdir={target}",), "(500, 10) and type <U"
  ),
  "resume sessions not a list": Case(
    "train", "sessions_not_list", ("{base}",), '"sessions" is not a list'
  ),
  "resume index naming another run": Case(
    "train", "crafted_index", ("{base}",), "only reads its own checkpoints"
  ),
  "resume garbled index, no checkpoint files": Case(
    "train", "garbled_index_no_files", ("{base}",), "will not silently start the run over"
  ),
  "train metrics empty": Case("train", "empty_metrics", ("{base}",), "metrics.json lacks"),
  "resume truncated history": Case(
    "train", "truncated_history", ("{base}",), "history.json is not a list of per-epoch"
  ),
  "resume history not records": Case(
    "train", "history_not_records", ("{base}",), "not a list of per-epoch records"
  ),
  # mutual_info.
  "mi series empty": Case(
    "mutual_info", "empty_mi_series", OUT + ("--workdir={target}",), "not a mutual-information"
  ),
  "mi recompute data not in --data_dir": Case(
    "mutual_info",
    "data_elsewhere",
    OUT + ("--workdir={target}", "--recompute", "--data_dir={tmp}/nodata"),
    "pass --data_dir={tmp}/elsewhere",
  ),
  "mi recompute truncated checkpoint": Case(
    "mutual_info",
    "finished_truncated_checkpoint",
    OUT + ("--workdir={target}", "--recompute", "--data_dir={data}"),
    "cannot be read",
  ),
  "mi recompute index naming another run": Case(
    "mutual_info",
    "finished_crafted_index",
    OUT + ("--workdir={target}", "--recompute", "--data_dir={data}"),
    "only reads its own checkpoints",
  ),
  "mi nothing": Case("mutual_info", "missing", OUT, "at least one --workdir"),
  "mi no series": Case(
    "mutual_info", "finished", OUT + ("--workdir={target}",), "no mutual_information.json"
  ),
  "mi recompute distill run": Case(
    "mutual_info", "distill_run", OUT + ("--workdir={target}", "--recompute"), "is a distill run"
  ),
  # kd_sweep and reproduce.
  "sweep unknown preset": Case("kd_sweep", "missing", ("--preset=huge", "--root={target}"), "huge"),
  "sweep root is a file": Case(
    "kd_sweep", "file", ("--preset=tiny", "--root={target}"), "is a file"
  ),
  "sweep data not prepared": Case(
    "kd_sweep",
    "missing",
    ("--preset=cifar10", "--root={target}", "--data_dir={tmp}/nodata", "--nodownload"),
    "tfds build cifar10",
  ),
  "reproduce unknown preset": Case(
    "reproduce", "missing", ("--preset=huge", "--root={target}"), "huge"
  ),
  "reproduce root is a file": Case(
    "reproduce", "file", ("--preset=tiny", "--root={target}"), "is a file"
  ),
  # Paths, files and sizes that crashed, hung or wrote in the wrong place (issue 18).
  "workdir name too long": Case(
    "train", "missing", ("{base}", "--workdir={tmp}/" + "w" * 300), "is too long"
  ),
  "workdir path too long": Case(
    "train", "missing", ("{base}", "--workdir={tmp}/" + "/".join(["w" * 200] * 21)), "is too long"
  ),
  "student workdir name too long": Case(
    "distill",
    "missing",
    ("{student}", "--teacher={run}", "--workdir={tmp}/" + "s" * 300),
    "is too long",
  ),
  "calibrate output name too long": Case(
    "calibrate", "missing", ("--workdir={run}", "--output_dir={tmp}/" + "o" * 300), "is too long"
  ),
  "project output name too long": Case(
    "project", "missing", ("--workdir={run}", "--output_dir={tmp}/" + "o" * 300), "is too long"
  ),
  "mi output name too long": Case(
    "mutual_info", "missing", ("--workdir={run}", "--output_dir={tmp}/" + "o" * 300), "is too long"
  ),
  "sweep root name too long": Case(
    "kd_sweep", "missing", ("--preset=tiny", "--root={tmp}/" + "r" * 300), "is too long"
  ),
  "reproduce root name too long": Case(
    "reproduce", "missing", ("--preset=tiny", "--root={tmp}/" + "r" * 300), "is too long"
  ),
  "binary flagfile": Case(
    "train", "binary", TRAIN + ("--flagfile={target}",), "is not a text file"
  ),
  "binary flagfile after others": Case(
    "train", "binary", ("{base}", "--flagfile={target}"), "target is not a text file"
  ),
  "workdir empty": Case("train", "missing", ("{base}", "--workdir="), "--workdir is empty"),
  "student workdir empty": Case(
    "distill", "missing", ("{student}", "--teacher={run}", "--workdir="), "--workdir is empty"
  ),
  "calibrate output empty": Case(
    "calibrate", "missing", ("--workdir={run}", "--output_dir="), "--output_dir is empty"
  ),
  "project output empty": Case(
    "project", "missing", ("--workdir={run}", "--output_dir="), "--output_dir is empty"
  ),
  "mi output empty": Case(
    "mutual_info", "missing", ("--workdir={run}", "--output_dir="), "--output_dir is empty"
  ),
  "sweep root empty": Case("kd_sweep", "missing", ("--preset=tiny", "--root="), "--root is empty"),
  "reproduce root empty": Case(
    "reproduce", "missing", ("--preset=tiny", "--root="), "--root is empty"
  ),
  "calibrate a billion bins": Case(
    "calibrate", "missing", OUT + ("--workdir={run}", "--num_bins=1000000000"), "1-1000"
  ),
  "calibrate 1e9 bins": Case(
    "calibrate", "missing", OUT + ("--workdir={run}", "--num_bins=1e9"), "--num_bins=1e9"
  ),
  "calibrate 1001 bins": Case(
    "calibrate", "missing", OUT + ("--workdir={run}", "--num_bins=1001"), "--num_bins=1001"
  ),
  "hidden units 65536,65536": Case(
    "train", "missing", TRAIN + ("--hidden_units=65536,65536",), "--hidden_units=65536,65536"
  ),
  "hidden units above 16384": Case(
    "train", "missing", TRAIN + ("--hidden_units=16385",), "1-16384"
  ),
  "hidden units too many weights": Case(
    "train", "missing", TRAIN + ("--hidden_units=16384,16384,16384",), "2**28"
  ),
  "temperature 1e-30": Case(
    "distill", "missing", ("{student}", "--teacher={run}", "--temperature=1e-30"), "[0.05, 1000]"
  ),
  "temperature 1e30": Case(
    "distill",
    "missing",
    ("{student}", "--teacher={run}", "--temperature=1e30"),
    "--temperature=1e+30",
  ),
  "cpu devices 64": Case("train", "missing", TRAIN + ("--cpu_devices=64",), "--cpu_devices=64"),
  "cpu devices 17": Case("train", "missing", TRAIN + ("--cpu_devices=17",), "at most 16"),
  # The training loss and its settings.
  "unknown loss": Case("train", "missing", TRAIN + ("--loss=mixup",), "--loss=mixup"),
  "online ls mix 1": Case(
    "train", "missing", TRAIN + ("--loss=online_ls", "--online_ls_mix=1"), "--online_ls_mix=1"
  ),
  "online ls mix 0": Case(
    "train", "missing", TRAIN + ("--loss=online_ls", "--online_ls_mix=0"), "without a loss"
  ),
  "focal gamma 0": Case(
    "train", "missing", TRAIN + ("--loss=focal", "--focal_gamma=0"), "--focal_gamma=0"
  ),
  "focal gamma 50": Case("train", "missing", TRAIN + ("--loss=focal", "--focal_gamma=50"), "20]"),
  "alpha with focal loss": Case(
    "train",
    "missing",
    TRAIN + ("--loss=focal", "--alpha=0.1"),
    "--alpha=0.1 is not allowed with --loss=focal",
  ),
  "alpha with online ls": Case(
    "train",
    "missing",
    TRAIN + ("--loss=online_ls", "--alpha=0.1"),
    "--alpha=0.1 is not allowed with --loss=online_ls",
  ),
  "focal gamma without focal loss": Case(
    "train",
    "missing",
    TRAIN + ("--focal_gamma=2",),
    "--focal_gamma=2 is not allowed with --loss=cross_entropy",
  ),
  "online ls mix with focal loss": Case(
    "train",
    "missing",
    TRAIN + ("--loss=focal", "--online_ls_mix=0.3"),
    "--online_ls_mix=0.3 is not allowed with --loss=focal",
  ),
  "student with focal loss": Case(
    "distill",
    "missing",
    ("{student}", "--teacher={run}", "--loss=focal"),
    "--loss=focal is not allowed for a distilled student",
  ),
}


@pytest.fixture(scope="module")
def base_args(fashion_data_dir):
  """Flags of a small, fast run (the finished run below, and every row's {base})."""
  return tiny_train_args(
    fashion_data_dir,
    "{target}",
    "--model=mlp",
    "--hidden_units=16",
    "--epochs=1",
    "--train_examples=1024",
    "--eval_examples=500",
    "--mi_examples_per_class=50",  # Few enough for 1024 examples (mutual_info --recompute).
  )


@pytest.fixture(scope="module")
def finished(base_args, tmp_path_factory):
  """A finished run of `base_args`, and a distill run of it: the rows copy them."""
  root = tmp_path_factory.mktemp("finished")
  run = str(root / "run")
  result = invoke("train", *[a.format(target=run) for a in base_args])
  assert result.code == 0, result.err[-2000:]
  student = str(root / "student")
  result = invoke("distill", *[a.format(target=student) for a in base_args], f"--teacher={run}")
  assert result.code == 0, result.err[-2000:]
  return run, student


def _truncate(path, keep=0.5):
  data = open(path, "rb").read()
  open(path, "wb").write(data[: int(len(data) * keep)])


def _edit_logits(path, edit):
  with np.load(os.path.join(path, "logits", "test.npz")) as f:
    logits, labels = f["logits"], f["labels"]
  logits, labels = edit(logits.copy(), labels.copy())
  np.savez(os.path.join(path, "logits", "test.npz"), logits=logits, labels=labels)


def _edit_record(path, edit):
  record = json.load(open(os.path.join(path, "config.json")))
  json.dump(edit(record), open(os.path.join(path, "config.json"), "w"))


def _zip_bomb(path, megabytes=200):
  """A `.keras` file (a zip) whose one member unpacks to `megabytes` MB of zeros (~0.2 MB)."""
  os.remove(path)
  zeros = bytes(2**20)
  with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
    with archive.open("model.weights.h5", "w", force_zip64=True) as member:
      for _ in range(megabytes):
        member.write(zeros)


def _teacher(path, input_shape, classes, nan=False, softmax=False):
  """A small .keras classifier; with `softmax`, a final Softmax layer and an Identity 'out'."""
  ending = [keras.layers.Softmax(), keras.layers.Identity(name="out")] if softmax else []
  model = keras.Sequential(
    [
      keras.Input(input_shape),
      keras.layers.Flatten(),
      keras.layers.Dense(8, name="penultimate"),
      keras.layers.Dense(classes, name="logits"),
      *ending,
    ]
  )
  if nan:
    model.get_layer("logits").kernel.assign(np.full((8, classes), np.nan, np.float32))
  model.save(path)


def _npz(target, state):
  """An .npz of 100 train and 20 test 8x8 colour images of 5 classes, spoiled as `state` says."""
  rng = np.random.RandomState(0)
  arrays = {
    "x_train": rng.randint(0, 256, (100, 8, 8, 3)).astype(np.uint8),
    "y_train": np.arange(100) % 5,
    "x_test": rng.randint(0, 256, (20, 8, 8, 3)).astype(np.uint8),
    "y_test": np.arange(20) % 5,
    "class_names": np.array(list("abcde")),
  }
  spoil = {
    "npz_no_labels": lambda a: a.pop("y_train"),
    "npz_one_class": lambda a: a.update(
      y_train=np.zeros(100, int), y_test=np.zeros(20, int), class_names=np.array(["a"])
    ),
    "npz_label_out_of_range": lambda a: a["y_train"].__setitem__(3, 7),
    "npz_negative_label": lambda a: a["y_train"].__setitem__(3, -1),
    "npz_mismatched": lambda a: a.update(y_train=a["y_train"][:90]),
    "npz_not_images": lambda a: a.update(x_train=np.zeros((100, 10))),
    "npz_unit_floats": lambda a: a.update(x_train=a["x_train"] / 255.0),
    "npz_one_hot": lambda a: a.update(y_train=np.eye(5)[a["y_train"]]),
    "npz_empty_class": lambda a: a.update(y_train=np.arange(100) % 4),
  }
  if state in spoil:
    spoil[state](arrays)
  with open(target, "wb") as f:
    np.savez(f, **arrays)


def _folder(target, state):
  """train/ (and test/) folders of 8x8 PNGs of classes a and b, spoiled as `state` says."""
  import tensorflow as tf

  def png(path, shape=(8, 8, 3)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tf.io.write_file(path, tf.io.encode_png(np.full(shape, 100, np.uint8)))

  for c in "ab":
    for i in range(1 if state == "folder_tiny_class" and c == "b" else 6):
      shape = (8, 8, 1) if state == "folder_mixed_channels" and c == "b" else (8, 8, 3)
      if state == "folder_varying_sizes" and i == 3:
        shape = (9, 8, 3)
      png(os.path.join(target, "train", c, f"{i}.png"), shape)
    if state == "folder_one_class":
      break
  if state == "folder_no_images":
    shutil.rmtree(target)
    os.makedirs(os.path.join(target, "a"))
    open(os.path.join(target, "a", "notes.txt"), "w").write("not an image")
  elif state == "folder_unreadable":
    open(os.path.join(target, "train", "b", "broken.png"), "wb").write(b"\x89PNG\r\n garbage")
  elif state == "folder_stray_split":
    png(os.path.join(target, "valid", "a", "0.png"))


def _make_state(state, target, run, student, tmp):
  """Puts `target` into `state`; returns the path the command is pointed at."""

  def copy(source=run):
    shutil.copytree(source, target)

  if state == "missing":
    return target
  if state.startswith("npz_"):
    _npz(target, state)
    return target
  if state.startswith("folder_"):
    _folder(target, state)
    return target
  if state == "empty":
    os.makedirs(target)
  elif state == "foreign":
    os.makedirs(target)
    open(os.path.join(target, "notes.txt"), "w").write("mine")
  elif state == "file":
    open(target, "w").write("a file")
  elif state == "binary":  # A flagfile that is not text (a model, an image, a typo'd path).
    open(target, "wb").write(b"\x89PNG\r\n\x1a\n\xff\xfe--alpha=0.1\n")
  elif state == "foreign_config":  # Another tool's run: a config.json, checkpoints/ and logits/.
    os.makedirs(os.path.join(target, "checkpoints"))
    os.makedirs(os.path.join(target, "logits"))
    open(os.path.join(target, "config.json"), "w").write('{"my": "precious pytorch config"}')
    open(os.path.join(target, "checkpoints", "epoch_99.pt"), "w").write("weights")
    open(os.path.join(target, "logits", "mine.npy"), "w").write("logits")
  elif state == "dangling_link":
    os.symlink(os.path.join(tmp, "nowhere"), target)
  elif state == "under_file":
    open(target, "w").write("a file")
    return os.path.join(target, "run")
  elif state == "distill_run":
    copy(student)
  else:
    copy()
    if state in (
      "sessions_not_list",
      "unfinished",
      "unfinished_no_model",
      "truncated_checkpoint",
      "truncated_history",
      "history_not_records",
      "crafted_index",
      "garbled_index_no_files",
    ):
      os.remove(os.path.join(target, "metrics.json"))
    index = os.path.join(target, "checkpoints", "checkpoint")
    if state in ("crafted_index", "finished_crafted_index"):  # Another user's run, by path.
      victim = "../../victim/checkpoints/ckpt-64"
      open(index, "w").write(
        f'model_checkpoint_path: "{victim}"\nall_model_checkpoint_paths: "{victim}"\n'
      )
    elif state == "garbled_index_no_files":  # A sync that copied half the index, no files.
      for name in os.listdir(os.path.dirname(index)):
        os.remove(os.path.join(os.path.dirname(index), name))
      open(index, "wb").write(b"model_checkpoint_pa\x00")
    if state == "unfinished_no_model":
      os.remove(os.path.join(target, "model.keras"))
      shutil.rmtree(os.path.join(target, "saved_model"))
    elif state in ("truncated_checkpoint", "finished_truncated_checkpoint"):
      _truncate(
        checkpoints.listed(os.path.join(target, "checkpoints"))[-1] + ".data-00000-of-00001"
      )
    elif state == "corrupt_config":
      open(os.path.join(target, "config.json"), "w").write('{"format": 1, "kind": "tra')
    elif state == "not_a_record":
      open(os.path.join(target, "config.json"), "w").write("[]")
    elif state == "other_version":
      _edit_record(target, lambda r: {**r, "format": 99})
    elif state == "truncated_history":
      _truncate(os.path.join(target, "history.json"))
    elif state == "history_not_records":
      open(os.path.join(target, "history.json"), "w").write("{}")
    elif state == "empty_metrics":
      open(os.path.join(target, "metrics.json"), "w").write("{}")
    elif state == "empty_mi_series":
      open(os.path.join(target, "mutual_information.json"), "w").write("[]")
    elif state == "zip_bomb":
      _zip_bomb(os.path.join(target, "model.keras"))
    elif state == "data_elsewhere":  # A stranger's config.json pointing at another folder.
      elsewhere = os.path.join(tmp, "elsewhere")
      _edit_record(target, lambda r: {**r, "config": {**r["config"], "data_dir": elsewhere}})
    elif state == "no_dataset":
      _edit_record(
        target, lambda r: {**r, "config": {k: v for k, v in r["config"].items() if k != "dataset"}}
      )
    elif state == "string_alpha":
      _edit_record(target, lambda r: {**r, "config": {**r["config"], "alpha": "0.1"}})
    elif state == "string_hidden_units":
      _edit_record(target, lambda r: {**r, "config": {**r["config"], "hidden_units": ["16"]}})
    elif state == "string_logits":
      _edit_logits(target, lambda z, y: (z.astype(str), y))
    elif state == "sessions_not_list":
      _edit_record(target, lambda r: {**r, "sessions": {}})
    elif state == "three_class_test":
      _edit_logits(target, lambda z, y: (z[:, :3], y % 3))
    elif state == "truncated_keras":
      _truncate(os.path.join(target, "model.keras"))
    elif state == "truncated_saved_model":
      _truncate(os.path.join(target, "saved_model", "saved_model.pb"))
    elif state == "nan_logits":
      _edit_logits(
        target, lambda z, y: (np.where(np.arange(z.size).reshape(z.shape) == 7, np.nan, z), y)
      )
    elif state == "short_labels":
      _edit_logits(target, lambda z, y: (z, y[:-5]))
    elif state == "corrupt_logits":
      _truncate(os.path.join(target, "logits", "test.npz"))
    elif state in ("cifar_teacher", "five_class_teacher", "nan_teacher", "softmax_teacher"):
      shutil.rmtree(target)
      target += ".keras"
      shape, classes = (
        ((32, 32, 3), 10)
        if state == "cifar_teacher"
        else ((28, 28, 1), 5 if "five" in state else 10)
      )
      _teacher(target, shape, classes, nan=state == "nan_teacher", softmax="softmax" in state)
    elif state not in (
      "finished",
      "unfinished",
      "crafted_index",
      "finished_crafted_index",
      "garbled_index_no_files",
    ):
      raise ValueError(state)
  return target


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_exits_2_with_a_clear_message_and_changes_nothing(
  name, base_args, finished, fashion_data_dir, tmp_path
):
  case = CASES[name]
  work = tmp_path / "work"
  os.makedirs(work)
  run, student = (shutil.copytree(path, work / os.path.basename(path)) for path in finished)
  target = _make_state(case.state, str(work / "target"), str(run), str(student), str(work))
  values = {
    "target": target,
    "run": str(run),
    "out": str(work / "out"),
    "tmp": str(work),
    "data": fashion_data_dir,
  }
  args = []
  for arg in case.args:
    if arg in ("{base}", "{student}"):
      path = target if arg == "{base}" else str(work / "new_student")
      args += [a.format(target=path) for a in base_args]
    else:
      args.append(arg.format(**values))
  before = tree_hash(work)
  result = invoke(case.command, *args)
  assert result.code == 2, (name, result.err[-2000:])
  assert case.message.format(**values) in result.err, (name, result.err[-2000:])
  assert result.err.startswith("error: ") and result.err.count("\n") <= 2, result.err
  assert tree_hash(work) == before, f"{name}: a refused command must not change anything on disk"


def test_the_table_covers_every_command():
  assert {c.command for c in CASES.values()} == {
    "train",
    "distill",
    "calibrate",
    "project",
    "mutual_info",
    "kd_sweep",
    "reproduce",
  }


def test_overwrite_replaces_only_an_ls_keras_workdir(finished, base_args, tmp_path):
  """--overwrite deletes a workdir holding another run, and only the workdir's own files."""
  target = str(tmp_path / "w")
  shutil.copytree(finished[0], target)
  result = invoke(
    "train", *[a.format(target=target) for a in base_args], "--alpha=0.2", "--overwrite"
  )
  assert result.code == 0, result.err[-2000:]
  assert json.load(open(os.path.join(target, "config.json")))["config"]["alpha"] == 0.2


# A property: whatever value a flag is given, the command either gets a config its run can
# use, or refuses the value with a UserError (exit 2) -- never any other exception.
FIELDS = [f for f in dataclasses.fields(config_lib.TrainConfig)]
VALUES = st.one_of(
  st.integers(min_value=-(10**12), max_value=10**12).map(str),
  st.floats(allow_nan=True, allow_infinity=True).map(repr),
  st.sampled_from(
    [
      "",
      "nan",
      "inf",
      "-inf",
      "1e400",
      "0",
      "-0",
      "1,2",
      "2,2",
      "a,b",
      ",",
      "1e-300",
      "True",
      "auto",
      "float32",
      "mixed_bfloat16",
      "small_cnn",
      "one_device",
    ]
  ),
  st.text(max_size=12),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(FIELDS), value=VALUES)
def test_any_flag_value_is_usable_or_refused_with_a_user_error(field, value):
  flag_values = flags.FlagValues()
  cli.define_config_flags(config_lib.TrainConfig, flag_values)
  try:
    flag_values(["ls_keras", f"--{field.name}={value}"])
    config = cli.config_from_flags(config_lib.TrainConfig, flag_values)
    schedule = training.make_schedule(config, train_size=50000, replicas=1)
    training.make_optimizer(config, schedule.total_steps)
  except (flags.Error, UserError):
    return
  parsed = getattr(config, field.name)
  for number in parsed if isinstance(parsed, tuple) else (parsed,):
    if isinstance(number, float):
      assert np.isfinite(number)
    elif isinstance(number, int):
      assert -1 < number <= 2**32  # Within the ranges TF and NumPy take.
