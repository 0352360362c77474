"""harmonize: learn and apply intensity harmonization of radiographs across sites."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("harmonize")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+src"
