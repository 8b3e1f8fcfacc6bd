"""The project's own errors. Each carries a message for the user (the file and line, or the key, and what was
expected); the command line prints it without a traceback and exits with status 2. A run stopped by a signal is
`TrainingInterrupted` (status 143). Nothing here imports more than the standard library, so the command line can
catch them before it has loaded torch."""

from __future__ import annotations


class PipelineError(Exception):
    """Any error of this pipeline that the user can act on."""


class ConfigError(PipelineError, ValueError):
    """A config key, value or type (or a command-line argument) that is not allowed."""


class DataError(PipelineError, ValueError):
    """Bad input data: names the file, line and column, or the task, and what was expected."""


class StoreError(PipelineError, RuntimeError):
    """A run-folder file is missing, corrupt, or does not match what it is joined to."""


class ModelLoadError(PipelineError, RuntimeError):
    """A model or tokenizer could not be loaded; the message says from where and what to try."""


class ExportError(PipelineError, ValueError):
    """A model, or one of its tasks, cannot be exported as a standard classifier exactly."""


class TrainingInterrupted(RuntimeError):
    """Training stopped on a signal after saving a checkpoint; rerunning the same command resumes."""
