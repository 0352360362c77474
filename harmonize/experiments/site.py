"""The experiment's site detector: the classifier's network trained to tell the target site's
training images from the source site's, then asked to tell the target site's test originals
from the source site's test originals and from each method's harmonized images. An AUC of 0.5
means the site can no longer be told from the image; 1.0, that it is plain to see.

Example::

    validation_auc = train_site_detector(settings, "out/archive/train", "shenzhen-like", uri)
    aucs = site_aucs(uri, target_test, {"original": source_test}, {"histogram": "out/runs/h"})
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np

from harmonize.classifier.config import ClassifierConfig
from harmonize.classifier.data import prepare_classifier_data
from harmonize.classifier.model import Classifier, load_classifier
from harmonize.classifier.site import site_auc, write_site_labels
from harmonize.classifier.training import train_classifier
from harmonize.dicom.decode import decode_dicom
from harmonize.io.archive import list_images
from harmonize.io.manifest import STATUS_OK, read_manifest
from harmonize.io.storage import Storage, join
from harmonize.report.document import Paragraph, Section, Table

SITE_LABELS = "site-labels.parquet"


def train_site_detector(
    settings: ClassifierConfig,
    train_archive: str,
    target_site: str,
    model_uri: str,
    storage: Storage,
    progress: bool = False,
    sources: Collection[str] | None = None,
) -> float:
    """Train the detector on the sites of ``train_archive`` (1 = ``target_site``; the others:
    ``sources``, default every other site) into ``model_uri``, from scratch (as the
    experiment's classifier); returns its validation AUC."""
    labels = write_site_labels(
        train_archive, target_site, join(model_uri, SITE_LABELS), storage, sources=sources
    )
    data = prepare_classifier_data(
        train_archive, labels, settings.input_size, storage=storage, progress=progress
    )
    result = train_classifier(
        settings, data, model_uri, storage=storage, resume=False, progress=progress
    )
    return float((result.validation or {})["auc"])


def _scores(detector: Classifier, uris: list[str], storage: Storage) -> np.ndarray:
    images = [decode_dicom(storage.read(uri)).pixels for uri in uris]
    return np.asarray(detector.score(images))


def site_aucs(
    detector_uri: str,
    target_uri: str,
    originals: Mapping[str, str],
    runs: Mapping[str, str],
    storage: Storage,
) -> dict[str, float]:
    """The detector's AUC of the target site's images under ``target_uri`` against each
    archive folder of ``originals`` and against each run's harmonized (``ok``) images."""
    detector = load_classifier(detector_uri, storage)
    target = _scores(detector, [o.uri for o in list_images(target_uri, storage)], storage)
    aucs = {}
    for name, uri in originals.items():
        others = _scores(detector, [o.uri for o in list_images(uri, storage)], storage)
        aucs[name] = site_auc(target, others)
    for name, run_uri in runs.items():
        rows = read_manifest(run_uri, storage).to_pandas()
        harmonized = rows[rows["status"] == STATUS_OK]["out_uri"].dropna().tolist()
        if harmonized:
            aucs[name] = site_auc(target, _scores(detector, harmonized, storage))
    return aucs


def site_section(aucs: Mapping[str, float], validation_auc: float, target_site: str) -> Section:
    """The report's section: one row per condition."""
    rows = tuple((name, f"{auc:.3f}") for name, auc in aucs.items())
    return Section(
        "Site detector",
        (
            Paragraph(
                f"**Table 3.** ROC AUC of a classifier trained to tell {target_site} images from "
                "the source site's (training split; validation AUC "
                f"{validation_auc:.3f}), on the test split: {target_site} originals against the "
                "source originals and against each method's harmonized images. 0.5: the site "
                "can no longer be told from the image."
            ),
            Table(("images", "site AUC"), rows, (False, True)),
        ),
    )
