"""Synthetic multi-site chest-radiograph archives with known labels and known site shifts.

The same procedural patients (``anatomy``, ``findings``, ``render``) are imaged through each
site's detector and processing (``profiles``, ``detector``) and written as real DICOM
(``dicom_writer``) with a labels table (``labels``); real PNGs can be wrapped the same way
(``wrap``).

Example::

    from harmonize.synth import synthesize_archive, wrap_pngs
    table = synthesize_archive("/tmp/a", ["shenzhen-like", "mc-like"], n_per_site=20, matrix=512)
    wrap_pngs("/work/shared/data/cxr-real/mc", "/tmp/a", "mc-like")
"""

from harmonize.io.labels import read_labels, write_labels
from harmonize.synth.anatomy import Patient, sample_patient
from harmonize.synth.archive import (
    RENDER_MAX,
    SyntheticImage,
    site_labels,
    synthesize_archive,
    synthesize_image,
)
from harmonize.synth.detector import expose, to_stored
from harmonize.synth.profiles import (
    PROFILES,
    RESPONSES,
    TRANSFER_SYNTAXES,
    SiteProfile,
    load_profile,
    profile_from_dict,
    profile_from_yaml,
    profile_to_dict,
    profile_to_yaml,
)
from harmonize.synth.render import lung_mask, render_attenuation
from harmonize.synth.wrap import png_to_unit, wrap_pngs

__all__ = [
    "PROFILES",
    "RENDER_MAX",
    "RESPONSES",
    "TRANSFER_SYNTAXES",
    "Patient",
    "SiteProfile",
    "SyntheticImage",
    "expose",
    "load_profile",
    "lung_mask",
    "png_to_unit",
    "profile_from_dict",
    "profile_from_yaml",
    "profile_to_dict",
    "profile_to_yaml",
    "read_labels",
    "render_attenuation",
    "sample_patient",
    "site_labels",
    "synthesize_archive",
    "synthesize_image",
    "to_stored",
    "wrap_pngs",
    "write_labels",
]
