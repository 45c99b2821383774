"""Error types. A :class:`UserError` is printed by the CLI as one line; anything else is a bug."""
from __future__ import annotations

__all__ = ["UserError", "ModelError", "DataError", "ConfigError", "MissingDependencyError", "StageError", "OutputError"]


class UserError(Exception):
    """Something the user can fix: bad input, a missing file, a missing extra."""


class ModelError(UserError):
    """An ONNX or torch model that cannot be read, checked or handled."""


class DataError(UserError):
    """Input or calibration data that does not fit the model (shape, dtype, NaN/Inf, missing)."""


class ConfigError(UserError, ValueError):
    """An invalid option value."""


class MissingDependencyError(UserError, ImportError):
    """An optional dependency (an extra) is not installed."""


class StageError(UserError):
    """A pipeline stage failed; names the stage and the stages that ran before it."""


class OutputError(UserError):
    """An output location that cannot be written: a directory where a file goes, read-only, full."""
