"""User-facing errors: a one-paragraph message and exit code 2, never a traceback."""


class UserError(Exception):
  """Bad input from the user (flags, paths, data). Entry points print it and exit 2."""


class DataNotPreparedError(UserError):
  """A TFDS data set is not present under the data directory."""


class WorkdirError(UserError):
  """A workdir that is missing, unfinished, corrupt or holds a different run."""


class TrainingDivergedError(UserError):
  """The loss became NaN or infinite; the run stopped, keeping its last good checkpoint."""


class RunPreempted(Exception):
  """The run was asked to stop (SIGTERM/SIGINT) and saved a checkpoint; a rerun resumes it.

  Not a UserError: commands exit with `cli.EXIT_PREEMPTED`, which schedulers can tell
  apart from bad input (2) and crashes (1).
  """
