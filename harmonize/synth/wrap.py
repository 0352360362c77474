"""Wrap real PNG radiographs as DICOM in a site profile's format (bits, photometric, syntax, tags).

The pixel content is kept: an 8-bit value ``p`` becomes the stored value
``round(p / 255 * (2**bits_stored - 1))`` (inverted for MONOCHROME1), optionally resampled to a
square matrix. Labels come from a ``labels.csv`` (``file,label[,...]``) in the PNG folder or its
parent, matched by relative path, then by file name; images without one get a null label.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path, PurePosixPath

import numpy as np
import numpy.typing as npt
import pandas as pd
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from harmonize.errors import ConfigError, HarmonizeError
from harmonize.io.labels import labels_frame, write_labels
from harmonize.io.storage import Storage, is_s3, join
from harmonize.synth.detector import to_stored
from harmonize.synth.dicom_writer import build_dataset, encode, make_identity
from harmonize.synth.profiles import SiteProfile, load_profile
from harmonize.synth.resample import resize

_FILE_COLUMNS = ("file", "path", "filename", "image")


def png_to_unit(data: bytes, source: str = "<bytes>") -> npt.NDArray[np.float64]:
    """A grayscale PNG as float64 in [0, 1] (8-bit: p / 255; 16-bit: p / 65535)."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError) as err:
        raise HarmonizeError(f'"{source}" is not a readable PNG: {err}') from err
    if image.mode in ("I;16", "I;16B", "I"):
        return np.asarray(image, dtype=np.float64) / 65535.0
    return np.asarray(image.convert("L"), dtype=np.float64) / 255.0


def _parent(uri: str) -> str:
    if is_s3(uri):
        return uri.rstrip("/").rsplit("/", 1)[0]
    return str(Path(uri).expanduser().absolute().parent)


def _relative(uri: str, base: str) -> str:
    if is_s3(uri):
        return uri[len(base.rstrip("/")) + 1 :]
    root = Path(base).expanduser().absolute()
    return Path(uri).expanduser().absolute().relative_to(root).as_posix()


def find_labels(png_dir: str, storage: Storage) -> dict[str, int]:
    """Label by relative path (from ``png_dir``) and by file name, from the first ``labels.csv``
    found in ``png_dir`` or its parent; empty when there is none."""
    folder_name = png_dir.rstrip("/") if is_s3(png_dir) else str(Path(png_dir).absolute())
    base_name = PurePosixPath(folder_name).name
    for folder, prefix in ((png_dir, ""), (_parent(png_dir), f"{base_name}/")):
        uri = join(folder, "labels.csv")
        if not storage.exists(uri):
            continue
        table = pd.read_csv(io.BytesIO(storage.read(uri)))
        column = next((c for c in _FILE_COLUMNS if c in table.columns), None)
        if column is None or "label" not in table.columns:
            raise ConfigError(
                f'"{uri}" has columns {list(table.columns)}; expected "label" and one of '
                f"{list(_FILE_COLUMNS)}"
            )
        out: dict[str, int] = {}
        names = table[column].astype(str).map(lambda f: PurePosixPath(f).name)
        unique = names[~names.duplicated(keep=False)]
        for name, label in zip(unique, table.loc[unique.index, "label"], strict=True):
            out[f"name:{name}"] = int(label)
        for file, label in zip(table[column].astype(str), table["label"], strict=True):
            if file.startswith(prefix):
                out[f"path:{file[len(prefix) :]}"] = int(label)
        return out
    return {}


def wrap_pngs(
    png_dir: str,
    out_uri: str,
    site: str | SiteProfile,
    storage: Storage | None = None,
    matrix: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Wrap every PNG under ``png_dir`` as DICOM of ``site`` under ``OUT/<site>/`` and merge the
    rows into the labels table; return the new rows plus ``source``, each PNG's path relative to
    ``png_dir`` (not stored in the table).

    Args:
        png_dir: folder (local or s3://) searched recursively for ``*.png``.
        out_uri: archive root.
        site: profile name, YAML path or profile giving the format and tags.
        storage: where to read and write.
        matrix: resample each image to ``matrix`` x ``matrix``; ``None`` keeps its size.
        progress: show a progress bar.

    Example::

        wrap_pngs("/work/shared/data/cxr-real/mc", "/tmp/real", "mc-like")
    """
    profile = site if isinstance(site, SiteProfile) else load_profile(site)
    storage = storage or Storage()
    pngs = storage.list(png_dir, suffixes=(".png",))
    if not pngs:
        raise ConfigError(f'no .png files under "{png_dir}"; point --from-png at a PNG folder')
    known = find_labels(png_dir, storage)
    rows: list[dict[str, object]] = []
    sources: list[str] = []
    for obj in tqdm(pngs, desc=f"wrap {profile.name}", unit="img", disable=not progress):
        data = storage.read(obj.uri)
        rel = _relative(obj.uri, png_dir)
        unit = png_to_unit(data, obj.uri)
        if matrix is not None:
            unit = np.clip(resize(unit, matrix), 0.0, 1.0).astype(np.float64)
        digest = hashlib.sha256(data).hexdigest()
        rng = np.random.default_rng(int(digest[:16], 16))
        identity = make_identity(["png", profile.name, rel, digest], rng, "", None, "RW")
        ds = build_dataset(
            to_stored(unit, profile),
            profile,
            identity,
            derived_from=f"real radiograph {PurePosixPath(rel).name} wrapped from an 8-bit PNG",
        )
        path = f"{profile.name}/{identity.sop_uid}.dcm"
        storage.write(join(out_uri, path), encode(ds, profile.transfer_syntax))
        label = known.get(f"path:{rel}", known.get(f"name:{PurePosixPath(rel).name}"))
        rows.append(
            {"image_id": identity.sop_uid, "site": profile.name, "label": label, "path": path}
        )
        sources.append(rel)
    new = labels_frame(rows)
    write_labels(out_uri, new, storage)
    return new.assign(source=pd.Series(sources, dtype="string"))
