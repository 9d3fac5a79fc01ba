"""Error types that reach the user as one line and exit code 2."""

from __future__ import annotations


class PosecapError(Exception):
    """A user-facing error: bad input, bad config, missing file.

    The CLI prints ``str(error)`` on one line and exits with code 2, never a traceback.
    The message should say what was wrong, where (file / field) and what to do.
    """

    exit_code = 2


class ConfigError(PosecapError):
    """A config file or value is invalid."""


class ArtifactError(PosecapError):
    """An artifact file is missing, unreadable or does not match its schema."""


class DagError(PosecapError):
    """The stage graph is invalid: a cycle or an input that nothing produces."""
