"""User-facing errors.

Every error a user can cause (a bad file, a bad argument) is raised as :class:`RBFError` with a
one-line message that names the file or argument and says what to do. The CLI prints it as
``rbf: error: <message>`` and exits with status 2, without a traceback.
"""


class RBFError(Exception):
    """An error caused by user input, with a one-line, actionable message."""


class DataError(RBFError):
    """Bad data: unreadable image, bad labels file, empty folder, ..."""


class CheckpointError(RBFError):
    """A checkpoint that cannot be loaded (format, architecture, safety)."""
