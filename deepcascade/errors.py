"""User-facing errors.

A :class:`UserError` is a mistake the user can fix (a bad flag, config field, missing file, missing
weights). The CLI turns it into one clear message and exit code 2, never a traceback.
"""


class UserError(Exception):
    """An error caused by user input; the message says what is wrong and what to do."""

    exit_code = 2
