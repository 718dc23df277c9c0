"""The project's own error types. Every user-facing failure is one of these, with a one-line message."""


class NtpProbeError(Exception):
    """Base class: the CLI prints ``str(err)`` on one line and exits with code 2."""


class GraphError(NtpProbeError, ValueError):
    """A graph text that cannot be parsed or does not fit the model."""


class ModelFileError(NtpProbeError):
    """A model file that is missing, corrupt, not ours, or inconsistent with its config."""


class UsageError(NtpProbeError):
    """A bad combination of options or arguments."""


class WriteError(NtpProbeError):
    """A file that could not be written (disk full, no permission); the previous version is left intact."""
