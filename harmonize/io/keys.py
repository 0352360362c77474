"""Output keys that stay inside their prefix, whatever the input object is called.

An archive's object names are not ours to trust: S3 accepts any UTF-8 key up to 1024 bytes, so a
key such as ``site/../../../tmp/x.dcm``, ``/etc/x``, ``a\\b.dcm``, a name with control characters
or a 900-byte name is valid there. `safe_key` turns the path of an input object relative to the
run's input prefix into a relative key that can be joined under any output prefix, local or S3,
without leaving it:

- every ``/``-separated segment is percent-encoded: bytes outside ``SAFE_CHARACTERS`` (control
  characters, backslashes, ``%``, ``:``, ``*``, ...) become ``%XX`` of their UTF-8 bytes, so no
  segment holds a separator of any filesystem;
- the segments ``.`` and ``..`` and a leading ``.`` (dot-files) are encoded too (``%2E``): no
  output walks up the tree or is hidden from a listing; empty segments (``a//b``, a leading
  ``/``) become ``%2F``;
- a segment longer than ``MAX_SEGMENT`` bytes keeps its beginning and its suffix around a
  SHA-256 of the whole segment (``~`` + 16 hex digits), and a key longer than ``MAX_KEY`` bytes
  becomes ``~long/`` + the SHA-256 of the whole path + its suffix.

Ordinary names (letters, digits, ``.-_+=,@()[]`` and spaces) come out unchanged, so a clean
archive's outputs mirror its layout. The encoding is injective on everything but the hashed
long names (``~`` is always encoded elsewhere), so two input objects never share an output.

Example::

    safe_key("site-a/patient 1/img.dcm")   # 'site-a/patient 1/img.dcm'
    safe_key("site/../../tmp/x.dcm")       # 'site/%2E%2E/%2E%2E/tmp/x.dcm'
"""

from __future__ import annotations

import hashlib
import string

#: Characters a segment keeps as they are (everything else is percent-encoded).
SAFE_CHARACTERS = frozenset(string.ascii_letters + string.digits + ".-_+=,@()[] ")
#: Longest segment (bytes): POSIX allows 255, and an atomic local write adds a temporary
#: prefix and suffix to the name.
MAX_SEGMENT = 200
#: Longest relative key (bytes): S3 allows 1024 in all, the output prefix and
#: ``images/<method>/<hash>/`` come in front.
MAX_KEY = 640
_HASH_DIGITS = 16
_SUFFIX_MAX = 12  # a kept suffix: ".dcm", ".dicom", ".dcm.gz"


def _encode(segment: str) -> str:
    if segment == "":
        return "%2F"  # an empty segment: the '/' of a doubled separator
    out = "".join(
        ch if ch in SAFE_CHARACTERS else "".join(f"%{b:02X}" for b in ch.encode("utf-8"))
        for ch in segment
    )
    if out.startswith("."):  # '.', '..' and dot-files
        out = "%2E" + out[1:]
    if out.endswith((" ", ".")):  # names Windows and some SMB/NFS shares would alter
        out = out[:-1] + ("%20" if out.endswith(" ") else "%2E")
    return out


def _suffix(name: str) -> str:
    dot = name.find(".", max(0, len(name) - _SUFFIX_MAX))
    return name[dot:] if dot > 0 else ""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:_HASH_DIGITS]


def _shorten(segment: str) -> str:
    """A segment over ``MAX_SEGMENT`` bytes: its start, ``~`` + its hash, its suffix."""
    suffix = _suffix(segment)
    keep = MAX_SEGMENT - len(suffix) - 1 - _HASH_DIGITS
    head = segment[:keep]
    while "%" in head[-2:]:  # never cut a %XX escape in two
        head = head[:-1]
    return f"{head}~{_digest(segment)}{suffix}"


def safe_key(relative: str) -> str:
    """The output key (relative, ``/``-separated) of an input object whose path relative to the
    input prefix is ``relative``; see the module docstring. Never empty, never absolute, no
    segment is ``.``/``..``/empty, and at most ``MAX_KEY`` bytes."""
    segments = [_encode(s) for s in relative.split("/")]
    segments = [s if len(s) <= MAX_SEGMENT else _shorten(s) for s in segments]
    key = "/".join(segments)
    if len(key) > MAX_KEY:
        key = f"~long/{_digest(relative)}{_suffix(segments[-1])}"
    return key
