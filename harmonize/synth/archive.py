"""Synthetic multi-site archives: patients -> attenuation -> each site's detector -> DICOM files.

``synthesize_archive`` writes ``OUT/<site>/<SOPInstanceUID>.dcm`` for every site and the labels
table (``labels.py``). Every random draw comes from a seed sequence keyed by (seed, site, index),
so an archive is reproducible byte for byte, and a site's images do not depend on which other
sites or how many images are generated alongside it.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from tqdm import tqdm

from harmonize.errors import ConfigError
from harmonize.io.labels import labels_frame, write_labels
from harmonize.io.storage import Storage, join
from harmonize.synth.anatomy import Patient, sample_patient
from harmonize.synth.arrays import StoredArray
from harmonize.synth.detector import expose, to_stored
from harmonize.synth.dicom_writer import Identity, build_dataset, encode, make_identity
from harmonize.synth.profiles import SiteProfile, load_profile
from harmonize.synth.render import render_attenuation

#: Anatomy is rendered at most this size and upsampled smoothly; noise and blur are added at the
#: full matrix. The render size depends only on the matrix, never on the site.
RENDER_MAX = 512


@dataclass(frozen=True)
class SyntheticImage:
    """One synthesized radiograph: its patient, identifiers, stored pixels and DICOM bytes."""

    patient: Patient
    identity: Identity
    pixels: StoredArray
    dicom: bytes
    truth: SyntheticImage | None = None  # the same patient and exposure at the truth site

    @property
    def label(self) -> int:
        return self.patient.label


def site_key(name: str) -> int:
    """A stable integer for a site name (Python's ``hash`` is salted per process)."""
    return zlib.crc32(name.encode("utf-8"))


def site_labels(
    n: int, seed: int, site: str, prevalence: float = 0.5, paired: bool = False
) -> npt.NDArray[np.int64]:
    """Labels of a site's ``n`` images: exactly ``round(prevalence * n)`` ones, in seeded order."""
    rng = np.random.default_rng([seed, 0 if paired else site_key(site), 0x1ABE1])
    labels = np.zeros(n, np.int64)
    labels[: int(round(prevalence * n))] = 1
    return rng.permutation(labels)


def synthesize_image(
    profile: SiteProfile,
    seed: int,
    index: int,
    label: int,
    *,
    matrix: int | None = None,
    lesion_strength: float = 1.0,
    paired: bool = False,
    truth: SiteProfile | None = None,
) -> SyntheticImage:
    """Synthesize image ``index`` of ``profile``'s site.

    Args:
        profile: the site's acquisition and processing.
        seed: archive seed; with ``index`` and the site name it fixes every random draw.
        index: position of the image within its site.
        label: 1 to add TB-like findings.
        matrix: output size (square); defaults to ``profile.matrix``.
        lesion_strength: multiplier of the findings' attenuation (0 hides them).
        paired: draw the patient without the site name, so that every site images the same
            patients (a paired archive, useful to check a harmonizer against the truth).
        truth: also image this very patient (the same attenuation map, findings and dose) with
            the truth site's detector and processing, pixel-aligned at the same matrix: the
            image a perfect harmonizer would output (``SyntheticImage.truth``).
    """
    m = matrix or profile.matrix
    key = site_key(profile.name)
    anatomy_rng = np.random.default_rng([seed, 0 if paired else key, index, 1])
    detector_rng = np.random.default_rng([seed, key, index, 2])
    patient = sample_patient(anatomy_rng, label, lesion_strength)
    attenuation = render_attenuation(patient, min(m, RENDER_MAX))
    dose = float(detector_rng.lognormal(0.0, 0.15))
    prefix = "".join(part[:1] for part in profile.name.split("-")).upper()

    def acquire(
        site: SiteProfile, rng: np.random.Generator, uid_key: list[object]
    ) -> SyntheticImage:
        """This patient's exposure through ``site``'s detector and processing, as DICOM; the
        identity rng (names, dates) is the same for the image and its truth."""
        pixels = to_stored(expose(attenuation, site, rng, m, dose), site)
        identity_rng = np.random.default_rng([seed, key, index, 3])
        identity = make_identity(uid_key, identity_rng, patient.sex, patient.age, prefix)
        ds = build_dataset(pixels, site, identity, exposure_mas=2.5 * dose)
        return SyntheticImage(patient, identity, pixels, encode(ds, site.transfer_syntax))

    image = acquire(profile, detector_rng, ["synth", seed, profile.name, index])
    if truth is None:
        return image
    truth_rng = np.random.default_rng([seed, key, index, 4])
    same = acquire(truth, truth_rng, ["synth-truth", seed, profile.name, truth.name, index])
    return dataclasses.replace(image, truth=same)


def resolve_sites(sites: Sequence[str | SiteProfile]) -> list[SiteProfile]:
    """Profiles for site names, YAML paths or profiles; duplicates are an error."""
    profiles = [s if isinstance(s, SiteProfile) else load_profile(s) for s in sites]
    names = [p.name for p in profiles]
    if not profiles:
        raise ConfigError("no site given; name at least one site profile, e.g. shenzhen-like")
    if len(set(names)) != len(names):
        raise ConfigError(f"site names must be unique, got {names}")
    return profiles


def synthesize_archive(
    out_uri: str,
    sites: Sequence[str | SiteProfile] = ("shenzhen-like", "mc-like"),
    n_per_site: int = 100,
    seed: int = 0,
    storage: Storage | None = None,
    matrix: int | None = None,
    progress: bool = True,
    *,
    lesion_strength: float = 1.0,
    prevalence: float = 0.5,
    paired: bool = False,
    truth_site: str | SiteProfile | None = None,
) -> pd.DataFrame:
    """Write a synthetic multi-site archive and its labels table; return the table's new rows.

    Every site images patients from the same distribution with the same label prevalence; the
    only systematic difference between sites is the profile (acquisition and processing).

    Args:
        out_uri: local folder or ``s3://bucket/prefix``.
        sites: built-in profile names, YAML paths or profiles.
        n_per_site: images per site.
        seed: fixes everything; the same seed gives byte-identical files.
        storage: where to write (default: local / AWS S3).
        matrix: override every profile's matrix (e.g. 256 for tests and demos).
        progress: show a progress bar.
        lesion_strength: multiplier of the findings' attenuation.
        prevalence: fraction of images with findings (exact per site, up to rounding).
        paired: every site images the same patients (see :func:`synthesize_image`).
        truth_site: also image every patient of the other sites at this site, under
            ``OUT/truth/<truth site>/`` (``truth_path`` in the labels table; a truth-site
            image is its own truth).

    Example::

        table = synthesize_archive("/tmp/archive", ["shenzhen-like", "mc-like"], 20, seed=1,
                                   matrix=512)
    """
    profiles = resolve_sites(sites)
    if isinstance(n_per_site, bool) or not isinstance(n_per_site, int) or n_per_site < 1:
        raise ConfigError(f"n_per_site is {n_per_site!r}; expected a positive integer")
    if matrix is not None and not 64 <= matrix <= 8192:
        raise ConfigError(f"matrix is {matrix!r}; expected an integer in [64, 8192]")
    if not 0.0 <= prevalence <= 1.0:
        raise ConfigError(f"prevalence is {prevalence!r}; expected a fraction in [0, 1]")
    if not lesion_strength >= 0.0:
        raise ConfigError(f"lesion_strength is {lesion_strength!r}; expected a number >= 0")
    storage = storage or Storage()
    truth = None if truth_site is None else resolve_sites([truth_site])[0]
    rows: list[dict[str, object]] = []
    with tqdm(
        total=len(profiles) * n_per_site, desc="synth", unit="img", disable=not progress
    ) as bar:
        for profile in profiles:
            labels = site_labels(n_per_site, seed, profile.name, prevalence, paired)
            for index, label in enumerate(labels):
                image = synthesize_image(
                    profile,
                    seed,
                    index,
                    int(label),
                    matrix=matrix,
                    lesion_strength=lesion_strength,
                    paired=paired,
                    truth=None if truth is None or truth.name == profile.name else truth,
                )
                path = f"{profile.name}/{image.identity.sop_uid}.dcm"
                storage.write(join(out_uri, path), image.dicom)
                truth_path = path if truth is not None else None
                if image.truth is not None and truth is not None:
                    truth_path = f"truth/{truth.name}/{image.truth.identity.sop_uid}.dcm"
                    storage.write(join(out_uri, truth_path), image.truth.dicom)
                rows.append(
                    {
                        "image_id": image.identity.sop_uid,
                        "site": profile.name,
                        "label": image.label,
                        "path": path,
                        "truth_path": truth_path,
                    }
                )
                bar.update()
    new = labels_frame(rows)
    write_labels(out_uri, new, storage)
    return new
