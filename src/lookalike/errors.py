"""Exceptions with one-line, actionable messages.

Everything the user can cause (a bad path, a corrupt image, an index made by another model)
raises a :class:`LookalikeError`; the CLI prints its message and exits non-zero instead of
showing a traceback.
"""


class LookalikeError(Exception):
    """Base class for errors that carry a message meant for the user."""


class ImageError(LookalikeError):
    """An image could not be read: missing, unsupported, corrupt, or too large."""


class IndexFormatError(LookalikeError):
    """The index folder is missing, damaged, or was written by an incompatible version."""


class ModelError(LookalikeError):
    """The requested model is unknown or its weights package is not installed."""


class IndexBusyError(LookalikeError):
    """Another process is writing to the index (indexing or removing) and the caller chose
    not to wait for it."""
