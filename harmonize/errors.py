"""The few exceptions harmonize raises; each message says what was wrong and how to fix it."""


class HarmonizeError(Exception):
    """Base class: a problem the user can fix (bad input, bad configuration, missing data)."""


class ConfigError(HarmonizeError):
    """A configuration value or command-line option is invalid."""


class StorageError(HarmonizeError):
    """An object or prefix could not be listed, read or written. ``transient``: the storage
    stayed unreachable for the whole retry budget (a re-run may well succeed)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient

    def __reduce__(self) -> tuple[object, ...]:  # keeps ``transient`` across processes
        return (_storage_error, (str(self), self.transient))


def _storage_error(message: str, transient: bool) -> StorageError:
    return StorageError(message, transient=transient)


class DicomError(HarmonizeError):
    """A DICOM object could not be decoded or encoded."""


class ModelError(HarmonizeError):
    """A fitted model could not be saved, loaded or applied."""
