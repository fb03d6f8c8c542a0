"""ls_keras: the TensorFlow/Keras reference implementation of "When Does Label Smoothing Help?"."""

__version__ = "0.1.0"
