"""A pydicom decoder plugin for the JPEG family (baseline, extended 12-bit, lossless process 14
and its SV1 — the common lossless syntax of CR/DX archives) through imagecodecs' libjpeg-turbo
(BSD-3-Clause; pydicom's own routes are GPL (pylibjpeg-libjpeg) or stop at 8 bits (Pillow)).

``register()`` adds it to pydicom's decoders once (``harmonize.dicom.parse`` calls it on
import); pydicom then tries it after its own available plugins. JPEG-LS comes from pyjpegls and
JPEG 2000 / HTJ2K from pylibjpeg-openjpeg, pydicom's own plugins. This module follows pydicom's
decoder-plugin interface: ``DECODER_DEPENDENCIES``, ``is_available`` and ``_decode_frame``.
"""

from __future__ import annotations

from typing import Any

from pydicom import uid

LABEL = "harmonize-imagecodecs"
_SYNTAXES = (uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit, uid.JPEGLossless, uid.JPEGLosslessSV1)
DECODER_DEPENDENCIES = {syntax: ("imagecodecs>=2024.1",) for syntax in _SYNTAXES}


def is_available(transfer_syntax: str) -> bool:
    """Whether imagecodecs (with its JPEG codec) is installed, for a syntax it decodes."""
    if transfer_syntax not in _SYNTAXES:
        return False
    try:
        import imagecodecs
    except ImportError:
        return False
    return bool(getattr(imagecodecs, "JPEG8", None) and imagecodecs.JPEG8.available)


def _decode_frame(src: bytes, runner: Any) -> bytes:
    """One JPEG frame's pixels, as pydicom's runner expects them (8- or 16-bit container,
    samples interleaved)."""
    import imagecodecs

    if runner.samples_per_pixel != 1:
        # Colour JPEG: leave the colour transform to pydicom's own plugins.
        raise NotImplementedError("harmonize's JPEG plugin decodes grayscale images only")
    array = imagecodecs.jpeg8_decode(src)
    runner.set_option("bits_allocated", 8 * array.dtype.itemsize)
    return bytes(array.tobytes())


def register() -> None:
    """Add the plugin to pydicom's JPEG decoders (idempotent)."""
    from pydicom.pixels import get_decoder

    for syntax in _SYNTAXES:
        decoder = get_decoder(syntax)
        if LABEL not in decoder._available and LABEL not in decoder._unavailable:
            decoder.add_plugin(LABEL, (__name__, "_decode_frame"))
