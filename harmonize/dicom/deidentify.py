"""De-identification of a header by the DICOM PS3.15 Basic Application Level Confidentiality
Profile (Table E.1-1), with pseudonyms and UIDs keyed on a user secret.

The profile's action for each of its 621 attributes (2024b) is read from
``ps315_basic_profile.tsv`` beside this module and applied to every element, in sequences too:
X removed, Z emptied, D replaced by a dummy value, U a remapped UID; X/Z and X/Z/D emptied (Z is
conformant where X would drop a Type 2 attribute), X/D and Z/D a dummy, X/Z/U* (references) kept
with their UIDs remapped and their contents de-identified. Private attributes, curves (50xx) and
overlays (60xx) go. Burned-in text cannot be removed from a header: a source that says it has
some (Burned In Annotation YES) is refused.

Names, IDs, UIDs and (with ``retain_dates="modified"``) dates are replaced by dicognito
(MIT, depends on pydicom only): each replacement is a function of the secret and the original
value alone (dicognito's seed is HMAC-SHA256(secret)), so the same patient gets the same
pseudonym, the same UID the same new UID and every date the same shift, in any process and on
any night; another secret gives others. pydicom/deid (MIT) was the other candidate; it needs
matplotlib and recipes written by hand, and ships no Table E.1-1 either; dicognito's seeded
replacements are the part this needs, and its element handlers take the table's actions as one
more handler. harmonize adds the table, the retain options, Patient Identity Removed, the
De-identification Method and its code sequence (CID 7050), and Longitudinal Temporal Information
Modified.

Example::

    options = DeidentifyOptions(secret="a long random string", retain_dates="modified")
    deidentify(header, options)  # in place
    assert header.PatientIdentityRemoved == "YES"
    assert pseudonymous_uid(source_uid, options) == header.SOPInstanceUID  # for a source header
"""

from __future__ import annotations

import csv
import functools
import hashlib
import hmac
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from dicognito import __version__ as dicognito_version
from dicognito.anonymizer import Anonymizer
from dicognito.element_anonymizer import ElementAnonymizer
from dicognito.randomizer import Randomizer
from dicognito.uianonymizer import UIAnonymizer
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence

from harmonize.dicom.header import dcm_code
from harmonize.errors import ConfigError, DicomError

RETAIN_DATES = ("none", "modified", "full")
PROFILE_FILE = "ps315_basic_profile.tsv"
MIN_SECRET_CHARS = 16

# CID 7050 De-identification Method codes (scheme DCM).
BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")
FULL_DATES_CODE = ("113106", "Retain Longitudinal Temporal Information Full Dates Option")
MODIFIED_DATES_CODE = ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")
DEVICE_CODE = ("113109", "Retain Device Identity Option")

_DATE_VRS = frozenset(("DA", "DT", "TM"))
# Attributes dicognito replaces with seeded pseudonyms (besides every PN and UI): kept where the
# profile allows a dummy value (Z or D), so that one patient or study keeps one pseudonym.
_PSEUDONYMIZED = frozenset(
    (
        "AccessionNumber",
        "FillerOrderNumberImagingServiceRequest",
        "FillerOrderNumberProcedure",
        "PatientID",
        "PerformedProcedureStepID",
        "PlacerOrderNumberImagingServiceRequest",
        "PlacerOrderNumberProcedure",
        "RequestedProcedureID",
        "ScheduledProcedureStepID",
        "StationName",
        "StudyID",
    )
)
_DUMMY_TEXT = "ANONYMIZED"
_DUMMY_BY_VR: dict[str, Any] = {
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    "AS": "000Y",
    "UR": "urn:x-anonymized",
    "IS": "0",
    "DS": "0",
    **{vr: 0 for vr in ("FL", "FD", "SL", "SS", "UL", "US", "SV", "UV")},
    **{vr: bytes(8) for vr in ("OB", "OD", "OF", "OL", "OV", "OW", "UN")},
}


@dataclass(frozen=True)
class DeidentifyOptions:
    """How to de-identify: the secret that keys pseudonyms, UIDs and the date shift (never
    written anywhere; ``fingerprint`` identifies it), and the profile's retain options.

    ``retain_dates``: ``"none"`` (the Basic Profile: dates emptied or dummies), ``"modified"``
    (Retain Longitudinal Temporal Information with Modified Dates: every date shifted back by
    one secret-keyed offset of 62 to 730 days, intervals kept) or ``"full"`` (dates kept).
    ``retain_device``: keep device identity (serial numbers, station, detector IDs).
    """

    secret: str = field(repr=False)
    retain_dates: str = "none"
    retain_device: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.secret, str) or len(self.secret) < MIN_SECRET_CHARS:
            raise ConfigError(
                f"the de-identification secret must be a string of at least {MIN_SECRET_CHARS} "
                "characters; set a long random one (the same every night, kept out of configs)"
            )
        if self.retain_dates not in RETAIN_DATES:
            raise ConfigError(
                f"retain_dates must be one of {', '.join(RETAIN_DATES)}, got {self.retain_dates!r}"
            )
        if not isinstance(self.retain_device, bool):
            raise ConfigError(f"retain_device must be true or false, got {self.retain_device!r}")

    @property
    def fingerprint(self) -> str:
        """A keyed fingerprint of the secret (HMAC-SHA256, 16 hex digits): what records and
        hashes hold instead of the secret, so a new secret re-processes every object."""
        return _keyed(self.secret, "harmonize-deid")[:16]

    def key(self) -> dict[str, Any]:
        """What decides the de-identified output, without the secret."""
        return {
            "secret_fingerprint": self.fingerprint,
            "retain_dates": self.retain_dates,
            "retain_device": self.retain_device,
        }


def _keyed(secret: str, purpose: str) -> str:
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def _seed(options: DeidentifyOptions) -> str:
    return _keyed(options.secret, "harmonize-deid-dicognito")


@dataclass(frozen=True)
class ProfileAction:
    """One row of Table E.1-1: the Basic Profile's action and the retain options' (C or K)."""

    basic: str
    modified_dates: str
    full_dates: str
    device: str


@functools.cache
def basic_profile() -> dict[int, ProfileAction]:
    """Table E.1-1 by tag, from ``ps315_basic_profile.tsv`` (wildcard rows are handled in code:
    private attributes, curves 50xx, overlays 60xx)."""
    text = resources.files("harmonize.dicom").joinpath(PROFILE_FILE).read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    table: dict[int, ProfileAction] = {}
    for row in csv.DictReader(lines, delimiter="\t"):
        if all(c in "0123456789ABCDEF" for c in row["tag"]):
            table[int(row["tag"], 16)] = ProfileAction(
                row["basic"], row["modified_dates"], row["full_dates"], row["device"]
            )
    return table


def pseudonymous_uid(uid: str, options: DeidentifyOptions) -> str:
    """The UID ``deidentify`` writes for ``uid`` with these options (e.g. a source's SOP Instance
    UID, as the manifest's image_id)."""
    ds = Dataset()
    ds.SOPInstanceUID = uid
    UIAnonymizer(Randomizer(_seed(options)))(ds, ds["SOPInstanceUID"])
    return str(ds.SOPInstanceUID)


def deidentify(ds: Dataset, options: DeidentifyOptions) -> None:
    """Apply the Basic Profile with ``options`` to ``ds`` in place (see the module's docstring).

    Raises:
        DicomError: the source says its pixels carry burned-in annotation.
    """
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        raise DicomError(
            "the source says its pixels carry burned-in annotation (Burned In Annotation YES), "
            "which de-identifying the header cannot remove; leave such images out of a "
            "de-identified run or clean their pixels first"
        )
    ds.remove_private_tags()
    for tag in [e.tag for e in ds if e.tag.group & 0xFF00 in (0x5000, 0x6000)]:
        del ds[tag]  # curves and overlays (their data and comments may hold text)
    had_file_meta = hasattr(ds, "file_meta")
    if not had_file_meta:  # dicognito walks the file meta too
        ds.file_meta = FileMetaDataset()
    _anonymizer(options).anonymize(ds)
    if not had_file_meta:
        del ds.file_meta
    _mark(ds, options)


@functools.lru_cache(maxsize=8)
def _anonymizer(options: DeidentifyOptions) -> Anonymizer:
    anonymizer = Anonymizer(seed=_seed(options))
    anonymizer.add_element_handler(_ProfileHandler(options))  # runs before dicognito's own
    return anonymizer


class _ProfileHandler(ElementAnonymizer):
    """A dicognito element handler applying Table E.1-1: returns True when it settled the
    element, False to let dicognito replace it (names, IDs, UIDs, shifted dates)."""

    def __init__(self, options: DeidentifyOptions) -> None:
        self.options = options
        self.table = basic_profile()

    def __call__(self, dataset: Dataset, element: DataElement) -> bool:
        if element.tag.group == 0x0002:
            return element.VR != "UI"  # file meta: only its instance UID is remapped
        if element.tag.group & 0xFF00 in (0x5000, 0x6000) or element.tag.is_private:
            del dataset[element.tag]  # inside sequences (the top level was cleared already)
            return True
        action = self._action(element.tag)
        if action is None:  # not in the profile: kept, but names and UIDs are always replaced
            return element.VR in _DATE_VRS and self.options.retain_dates != "modified"
        if action == "K":
            return True
        if action == "C":  # modified dates: dicognito shifts DA/DT (and the TM beside a DA)
            return False
        if action == "X":
            del dataset[element.tag]
            return True
        if action == "U" and keyword_for_tag(element.tag).endswith("ClassUID"):
            # dicognito keeps class UIDs; the profile remaps this one (a device class's)
            if element.VM > 1:
                element.value = [pseudonymous_uid(str(v), self.options) for v in element.value]
            elif element.value:
                element.value = pseudonymous_uid(str(element.value), self.options)
            return True
        if action == "U" or element.VR == "UI":
            return False
        if action == "X/Z/U*" and element.VR == "SQ":
            return True  # the references stay; their items are walked (UIDs remapped)
        if element.VR == "SQ":  # X/D, X/Z/D: removed; Z: emptied; D: one empty item
            if "X" in action:
                del dataset[element.tag]
            else:
                element.value = Sequence([] if "Z" in action else [Dataset()])
            return True
        if _pseudonymized(element) and element.value:
            return False  # dicognito's seeded pseudonym is the profile's dummy value
        if "Z" in action:
            element.value = element.empty_value
        else:
            element.value = _DUMMY_BY_VR.get(element.VR, _DUMMY_TEXT)
        return True

    def _action(self, tag: int) -> str | None:
        row = self.table.get(tag)
        if row is None:
            return None
        if self.options.retain_device and row.device == "K":
            return "K"
        if self.options.retain_dates == "full" and row.full_dates == "K":
            return "K"
        if self.options.retain_dates == "modified" and row.modified_dates == "C":
            return "C"
        return row.basic

    def describe_actions(self) -> Iterator[str]:
        yield "Apply DICOM PS3.15 Table E.1-1 (Basic Profile) actions"


def _pseudonymized(element: DataElement) -> bool:
    return element.VR == "PN" or keyword_for_tag(element.tag) in _PSEUDONYMIZED


def _mark(ds: Dataset, options: DeidentifyOptions) -> None:
    """Patient Identity Removed, the method in words and as CID 7050 codes, and whether dates
    were modified (PS3.3 C.12.1.1.7)."""
    codes = [BASIC_PROFILE_CODE]
    if options.retain_dates == "full":
        codes.append(FULL_DATES_CODE)
    elif options.retain_dates == "modified":
        codes.append(MODIFIED_DATES_CODE)
    if options.retain_device:
        codes.append(DEVICE_CODE)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = f"harmonize (dicognito {dicognito_version}): PS3.15 Basic Profile"
    ds.DeidentificationMethodCodeSequence = [dcm_code(value, meaning) for value, meaning in codes]
    ds.LongitudinalTemporalInformationModified = {
        "none": "REMOVED",
        "modified": "MODIFIED",
        "full": "UNMODIFIED",
    }[options.retain_dates]
