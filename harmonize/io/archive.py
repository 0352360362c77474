"""An archive is the DICOM objects under a prefix: which names count, and how they are listed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harmonize.errors import ConfigError

if TYPE_CHECKING:  # this module stays light: the CLI reads DICOM_SUFFIXES for its --help
    from harmonize.io.storage import ObjectInfo, Storage

#: Object names that count as DICOM (case-insensitive). ``harmonize run --suffix`` may widen it.
DICOM_SUFFIXES = (".dcm", ".dicom")


def list_images(
    uri: str,
    storage: Storage,
    *,
    what: str = "images",
    suffixes: tuple[str, ...] = DICOM_SUFFIXES,
    limit: int | None = None,
    hint: str = "",
) -> list[ObjectInfo]:
    """The objects under ``uri`` whose names end with one of ``suffixes`` (all objects when
    empty), sorted by URI; the first ``limit`` of them.

    Raises:
        ConfigError: there is none (``what`` names them in the message, ``hint`` says what else
            to try); StorageError: the prefix cannot be listed.
    """
    objects = storage.list(uri, suffixes=suffixes)[:limit]
    if not objects:
        endings = f" ending with {list(suffixes)}" if suffixes else ""
        raise ConfigError(f'no {what} under "{uri}"{endings}; check the URI{hint}')
    return objects
