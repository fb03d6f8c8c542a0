"""ls_keras: "When Does Label Smoothing Help?" (Mueller, Kornblith, Hinton 2019) in TensorFlow/Keras."""

from setuptools import find_packages, setup

ENTRY_POINTS = {
    "ls-keras-train": "ls_keras.train:run",
    "ls-keras-calibrate": "ls_keras.calibrate:run",
    "ls-keras-project": "ls_keras.project:run",
    "ls-keras-mutual-info": "ls_keras.mutual_info:run",
    "ls-keras-distill": "ls_keras.distill:run",
    "ls-keras-kd-sweep": "ls_keras.kd_sweep:run",
    "ls-keras-reproduce": "ls_keras.reproduce:run",
}

setup(
    name="ls_keras",
    version="0.1.0",
    description="Label smoothing in TensorFlow/Keras: training, calibration, representations, distillation.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["ls_keras", "ls_keras.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.18,<2.22",
        "keras>=3.8,<4",
        "tensorflow-datasets>=4.9.7,<5",
        "importlib_resources>=6",  # Imported by TFDS when it builds a data set, but not declared.
        "tensorflow-probability>=0.25,<0.26",
        "tf-keras>=2.18,<2.22",  # tensorflow-probability needs it alongside Keras 3.
        "tensorboard>=2.18,<2.22",
        "matplotlib>=3.7",
        "markdown>=3.4",  # The main job's report: one Markdown source, rendered to HTML.
        "absl-py>=2.0",
        "numpy>=1.26",
        "scikit-learn>=1.5",  # t-SNE (projection/tsne.py); TSNE(max_iter=...) is 1.5 on.
        "threadpoolctl>=3.1",  # A scikit-learn dependency; tsne.py limits its OpenMP threads.
    ],
    extras_require={
    "test": ["pytest>=7", "pytest-xdist>=3.5", "hypothesis>=6", "ruff>=0.6"],
    "bench": ["torch>=2.1"],  # tools/benchmark.py's PyTorch peers.
  },
    entry_points={"console_scripts": [f"{name}={target}" for name, target in ENTRY_POINTS.items()]},
)
