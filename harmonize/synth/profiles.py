"""Site profiles: how one hospital's detector and processing turn X-ray exposure into DICOM.

A :class:`SiteProfile` holds everything that differs between two sites imaging the same patients:
the detector response curve, VOI window, bit depth, photometric interpretation, noise, blur,
scatter, matrix size, transfer syntax and vendor tags. Profiles are frozen, validated on
construction and loadable from YAML; the built-ins live in ``harmonize/profiles/*.yaml``.

Example::

    profile = load_profile("shenzhen-like")          # a built-in, by name
    profile = load_profile("my-site.yaml")           # or a YAML file
    text = profile_to_yaml(profile)                  # and back
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from importlib.resources import files
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import yaml
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from harmonize.errors import ConfigError
from harmonize.synth.arrays import FloatArray
from harmonize.synth.processing import Stage, parse_stages, stages_to_list
from harmonize.validate import (
    Bounded,
    FieldError,
    YamlDocument,
    check_choice,
    check_int,
    check_keys,
    check_number,
    check_text,
    set_field,
)

#: Transfer syntaxes a profile may name, by short name; the UID string is accepted too.
TRANSFER_SYNTAXES: dict[str, UID] = {
    "explicit-vr-little-endian": ExplicitVRLittleEndian,
    "jpeg2000-lossless": JPEG2000Lossless,
    "rle-lossless": RLELossless,
}
BITS_STORED = (10, 12, 14, 16)
PHOTOMETRICS = ("MONOCHROME1", "MONOCHROME2")


# -- response curves: log-exposure (attenuation) -> display brightness in [0, 1] ----------------
@dataclass(frozen=True)
class _Curve(Bounded):
    def what(self) -> str:
        return f"{super().what()} response"


@dataclass(frozen=True)
class GammaResponse(_Curve):
    """``v = 1 - exposure**gamma = 1 - exp(-gamma * A)``: a power-law detector read out inverted.

    Small ``gamma`` gives a bright, flat image (lungs mid-grey); large ``gamma`` saturates early.
    """

    gamma: float = 0.5
    kind: ClassVar[str] = "gamma"
    bounds = {"gamma": (0.01, 10)}

    def __call__(self, attenuation: FloatArray) -> FloatArray:
        return 1.0 - np.exp(np.float32(-self.gamma) * attenuation)


@dataclass(frozen=True)
class LogResponse(_Curve):
    """``v = (A - low) / (high - low)``, clipped: linear in log-exposure (classic CR read-out)."""

    low: float = 0.0
    high: float = 6.0
    kind: ClassVar[str] = "log"
    bounds = {"low": (-5, 20), "high": (-5, 20)}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.high <= self.low:
            raise FieldError(
                f"log response high ({self.high:g}) must be greater than low ({self.low:g})", "high"
            )

    def __call__(self, attenuation: FloatArray) -> FloatArray:
        scale = np.float32(1.0 / (self.high - self.low))
        return np.clip((attenuation - np.float32(self.low)) * scale, 0.0, 1.0)


@dataclass(frozen=True)
class SigmoidResponse(_Curve):
    """``v = 1 / (1 + exp(-(A - center) / slope))``: a film-like S curve, high mid-contrast."""

    center: float = 2.7
    slope: float = 0.6
    kind: ClassVar[str] = "sigmoid"
    bounds = {"center": (-5, 20), "slope": (0.01, 20)}

    def __call__(self, attenuation: FloatArray) -> FloatArray:
        # 1 / (1 + exp(-z)) written with tanh: one transcendental, no overflow.
        z = (attenuation - np.float32(self.center)) * np.float32(0.5 / self.slope)
        return np.float32(0.5) + np.float32(0.5) * np.tanh(z)


Response = GammaResponse | LogResponse | SigmoidResponse
RESPONSES: dict[str, type[GammaResponse] | type[LogResponse] | type[SigmoidResponse]] = {
    cls.kind: cls for cls in (GammaResponse, LogResponse, SigmoidResponse)
}


# -- the other parts of a profile ---------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """VOI window in stored pixel values (written through the rescale as DICOM requires)."""

    center: float
    width: float


@dataclass(frozen=True)
class Noise:
    """Quantum noise (``photons_per_pixel`` at unattenuated exposure; variance = exposure /
    photons) and electronic noise (Gaussian, sigma in units of unattenuated exposure), both at
    the profile's native matrix."""

    photons_per_pixel: float = 5000.0
    electronic_sigma: float = 0.0005

    def __post_init__(self) -> None:
        check_number("noise", "photons_per_pixel", self.photons_per_pixel, low=1.0)
        check_number("noise", "electronic_sigma", self.electronic_sigma, low=0.0, high=1.0)


@dataclass(frozen=True)
class Vendor:
    """Equipment tags written into every image."""

    manufacturer: str
    model: str
    institution: str
    station: str

    def __post_init__(self) -> None:
        for f in fields(self):
            check_text("vendor", f.name, getattr(self, f.name))
            if len(getattr(self, f.name)) > 64:
                raise FieldError(f"vendor {f.name} is longer than 64 characters (DICOM LO)", f.name)


@dataclass(frozen=True)
class SiteProfile:
    """One site's acquisition and processing chain; see the module docstring.

    ``noise`` and ``blur_sigma_px`` describe the detector at ``matrix``; rendering at another
    matrix rescales them as binning would, so the physics stays the same.
    """

    name: str
    response: Response
    window: Window
    bits_stored: int
    photometric: Literal["MONOCHROME1", "MONOCHROME2"]
    transfer_syntax: str
    vendor: Vendor
    matrix: int = 2048
    noise: Noise = field(default_factory=Noise)
    blur_sigma_px: float = 1.0
    scatter_fraction: float = 0.1
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    field_mm: float = 430.0
    kvp: float = 120.0
    description: str = ""
    processing: tuple[Stage, ...] = ()

    def __post_init__(self) -> None:
        check_text("profile", "name", self.name)
        where = f'profile "{self.name}"'
        set_field(self, "processing", parse_stages(self.processing, where))
        check_choice(where, "bits_stored", self.bits_stored, BITS_STORED)
        check_choice(where, "photometric", self.photometric, PHOTOMETRICS)
        if self.transfer_syntax not in TRANSFER_SYNTAXES.values():
            raise FieldError(
                f"{where} transfer_syntax must be one of {', '.join(sorted(TRANSFER_SYNTAXES))} "
                f"or their UIDs, got {self.transfer_syntax!r}",
                "transfer_syntax",
            )
        check_int(where, "matrix", self.matrix, low=64, high=8192)
        top = self.max_stored
        check_number(f"{where} window", "center", self.window.center, low=0, high=top)
        check_number(f"{where} window", "width", self.window.width, low=1, high=2 * (top + 1))
        check_number(where, "blur_sigma_px", self.blur_sigma_px, low=0, high=20)
        check_number(where, "scatter_fraction", self.scatter_fraction, low=0, high=2)
        check_number(where, "rescale_slope", self.rescale_slope, low=1e-6, high=1e6)
        check_number(where, "rescale_intercept", self.rescale_intercept, low=-1e6, high=1e6)
        check_number(where, "field_mm", self.field_mm, low=50, high=1000)
        check_number(where, "kvp", self.kvp, low=20, high=200)

    @property
    def max_stored(self) -> int:
        """The largest stored pixel value, ``2**bits_stored - 1``."""
        return int(2**self.bits_stored - 1)

    @property
    def transfer_syntax_uid(self) -> UID:
        return UID(self.transfer_syntax)


# -- YAML / dict conversion -----------------------------------------------------------------------
_NESTED = {"window": Window, "noise": Noise, "vendor": Vendor}
_TOP_KEYS = {f.name for f in fields(SiteProfile)} - {"rescale_slope", "rescale_intercept"}
_TOP_KEYS |= {"rescale"}


def _build(what: str, cls: type[Any], raw: Any, drop: tuple[str, ...] = ()) -> Any:
    """``cls(**raw)`` with unknown or missing keys reported as ConfigError."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{what} settings must be a mapping, got {raw!r}")
    allowed = [f.name for f in fields(cls)] + list(drop)
    check_keys(raw, allowed, what)
    try:
        return cls(**{k: v for k, v in raw.items() if k not in drop})
    except TypeError as err:  # a required key is missing
        raise ConfigError(f"{what}: {err}; expected keys {sorted(allowed)}") from err


def profile_from_dict(raw: Mapping[str, Any]) -> SiteProfile:
    """Build and validate a profile from its YAML mapping (see ``harmonize/profiles/``)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"a site profile must be a mapping, got {type(raw).__name__}")
    name = raw.get("name", "<unnamed>")
    where = f'profile "{name}"'
    check_keys(raw, sorted(_TOP_KEYS), "site profile")
    values = dict(raw)
    response = values.get("response")
    if not isinstance(response, Mapping) or response.get("kind") not in RESPONSES:
        kind = response.get("kind") if isinstance(response, Mapping) else response
        raise FieldError(
            f"{where} response kind must be one of {', '.join(sorted(RESPONSES))}, got {kind!r}",
            "kind" if isinstance(response, Mapping) else "response",
        )
    values["response"] = _build(
        f"{where} response", RESPONSES[response["kind"]], response, drop=("kind",)
    )
    for key, cls in _NESTED.items():
        if key in values:
            values[key] = _build(f"{where} {key}", cls, values[key])
    ts = values.get("transfer_syntax")
    values["transfer_syntax"] = TRANSFER_SYNTAXES.get(ts, ts) if isinstance(ts, str) else ts
    rescale = values.pop("rescale", {}) or {}
    if not isinstance(rescale, Mapping) or set(rescale) - {"slope", "intercept"}:
        raise FieldError(
            f"{where} rescale must be {{slope: S, intercept: I}}, got {rescale!r}", "rescale"
        )
    values["rescale_slope"] = rescale.get("slope", 1.0)
    values["rescale_intercept"] = rescale.get("intercept", 0.0)
    profile: SiteProfile = _build(where, SiteProfile, values)
    return profile


def profile_to_dict(profile: SiteProfile) -> dict[str, Any]:
    """The YAML mapping of ``profile``; ``profile_from_dict`` inverts it exactly."""
    out = asdict(profile)
    out["response"] = {"kind": profile.response.kind, **asdict(profile.response)}
    short = {uid: name for name, uid in TRANSFER_SYNTAXES.items()}
    out["transfer_syntax"] = short[UID(profile.transfer_syntax)]
    out["rescale"] = {"slope": out.pop("rescale_slope"), "intercept": out.pop("rescale_intercept")}
    out.pop("processing")
    if profile.processing:  # after the detector response, before quantisation
        out["processing"] = stages_to_list(profile.processing)
    return out


def profile_to_yaml(profile: SiteProfile) -> str:
    return yaml.safe_dump(profile_to_dict(profile), sort_keys=False)


def profile_from_yaml(text: str, source: str = "<string>") -> SiteProfile:
    """A profile from YAML text; errors name ``source``, the line and the key."""
    doc = YamlDocument(text, source)
    try:
        return profile_from_dict(doc.data)
    except ConfigError as err:
        raise doc.error(err) from err


def _load_builtins() -> dict[str, SiteProfile]:
    out: dict[str, SiteProfile] = {}
    folder = files("harmonize") / "profiles"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            profile = profile_from_yaml(entry.read_text(encoding="utf-8"), entry.name)
            out[profile.name] = profile
    return out


#: Built-in site profiles by name.
PROFILES: dict[str, SiteProfile] = _load_builtins()


def load_profile(name_or_path: str | Path) -> SiteProfile:
    """A built-in profile by name (see :data:`PROFILES`) or a profile read from a YAML file.

    Raises:
        ConfigError: the name is neither a built-in nor a readable YAML file, or the YAML holds
            an invalid profile.
    """
    key = str(name_or_path)
    if key in PROFILES:
        return PROFILES[key]
    path = Path(key).expanduser()
    if path.suffix.lower() in (".yaml", ".yml") and path.is_file():
        return profile_from_yaml(path.read_text(encoding="utf-8"), str(path))
    raise ConfigError(
        f'site profile "{key}" is neither a built-in ({", ".join(sorted(PROFILES))}) nor an '
        "existing .yaml file"
    )
