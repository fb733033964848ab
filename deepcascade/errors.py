"""User-facing errors.

A :class:`UserError` is a mistake the user can fix (a bad flag, config field, missing file, missing
weights). The CLI turns it into one clear message and exit code 2, never a traceback.
"""


class UserError(Exception):
    """An error caused by user input; the message says what is wrong and what to do."""

    exit_code = 2


class TrainingStopped(Exception):
    """Training stopped early on purpose (signal, non-finite loss); the message says why and what is kept."""

    exit_code = 1


class NonFiniteLoss(TrainingStopped):
    """A loss became NaN or infinite; the last good checkpoint stays."""

    exit_code = 1


class Interrupted(TrainingStopped):
    """SIGINT/SIGTERM: a checkpoint was written, then the run stopped."""

    exit_code = 130
