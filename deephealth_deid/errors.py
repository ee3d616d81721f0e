"""The exceptions raised by deephealth_deid.

Every error the library raises on purpose derives from :class:`DeidError`, so a
caller processing a cohort can catch that one class, record the message and go
on with the next case. Messages name the file and say what to do.
"""

from __future__ import annotations

__all__ = [
    "DeidError",
    "InputError",
    "InputNotFoundError",
    "UnsupportedInputError",
    "CorruptInputError",
    "WrongKindError",
    "InvalidDataError",
    "TooLargeError",
    "DecoderUnavailableError",
    "SeriesError",
    "MultipleSeriesError",
    "SliceGeometryError",
    "OutputExistsError",
    "OutputError",
    "DatasetError",
    "ConfigError",
    "EngineUnavailableError",
    "ModelCheckError",
]


class DeidError(Exception):
    """Base class of every error raised on purpose by deephealth_deid."""


class InputError(DeidError):
    """An input path or its content cannot be used."""


class InputNotFoundError(InputError, FileNotFoundError):
    """The input path does not exist."""


class UnsupportedInputError(InputError):
    """The input is not in a format the library reads."""


class CorruptInputError(InputError):
    """The input has a known format but is empty, truncated or damaged."""


class WrongKindError(InputError):
    """A 2D image was given where a volume is needed, or the reverse."""


class InvalidDataError(InputError):
    """The data read is unusable: NaN/Inf values, a zero-sized axis, and so on."""


class TooLargeError(InputError, MemoryError):
    """The data would not fit in the memory available (checked before reading)."""


class DecoderUnavailableError(InputError):
    """The pixel data is compressed with a transfer syntax no installed decoder handles."""


class SeriesError(InputError):
    """A DICOM series cannot be assembled into one volume."""


class MultipleSeriesError(SeriesError):
    """A folder holds several series and none was chosen."""


class SliceGeometryError(SeriesError):
    """Slices are missing, duplicated, unevenly spaced or not on one line."""


class OutputError(DeidError):
    """An output cannot be written where it was asked."""


class OutputExistsError(OutputError, FileExistsError):
    """The output exists and overwriting was not asked for."""


class DatasetError(DeidError):
    """A DeepHealth YAML dataset is malformed or refers to missing files."""


class ConfigError(DeidError):
    """A configuration file is malformed."""


class EngineUnavailableError(DeidError, ImportError):
    """A compute engine was asked for but its package cannot be imported."""


class ModelCheckError(DeidError):
    """A model file or an engine failed its integrity or numerical check."""
