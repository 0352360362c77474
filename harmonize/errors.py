"""The few exceptions harmonize raises; each message says what was wrong and how to fix it."""


class HarmonizeError(Exception):
    """Base class: a problem the user can fix (bad input, bad configuration, missing data)."""


class ConfigError(HarmonizeError):
    """A configuration value or command-line option is invalid."""


class StorageError(HarmonizeError):
    """An object or prefix could not be listed, read or written."""


class DicomError(HarmonizeError):
    """A DICOM object could not be decoded or encoded."""


class ModelError(HarmonizeError):
    """A fitted model could not be saved, loaded or applied."""
