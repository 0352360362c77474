"""An archive is the DICOM objects under a prefix: which names count, and how they are listed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harmonize.errors import ConfigError

if TYPE_CHECKING:  # this module stays light: the CLI reads DICOM_SUFFIXES for its --help
    from harmonize.io.storage import ObjectInfo, Storage

#: Object names that count as DICOM (case-insensitive). ``harmonize run --suffix`` may widen it.
DICOM_SUFFIXES = (".dcm", ".dicom")
#: The largest image decoded (Rows x Columns x frames): a header claiming more is refused
#: before any pixel memory is allocated. 8192² (67 megapixels, 128 MiB of 16-bit pixels and
#: 256 MiB as float32) is above every radiograph (CR/DX: at most ~4300 x 3500; digital
#: mammography ~4000 x 5000); raise it for larger images (``harmonize run --max-pixels``).
MAX_PIXELS = 8192 * 8192
#: A run's manifest rows are committed in parts of at most this many rows (``ManifestWriter``;
#: here, not in the manifest module, so that the CLI's --help needs no pyarrow) ...
PART_ROWS = 256
#: ... and at least this often (seconds) while rows arrive.
PART_SECONDS = 30.0


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
