"""The site detector: the classifier's network trained to tell the target site's originals
(label 1) from the other sites' (0). On held-out originals its AUC says how visible the site
difference is; on harmonized source images, how much of it a method removed (0.5: the site can
no longer be told from the image).

Example::

    labels = write_site_labels("s3://archive", "shenzhen-like", "s3://work/site-labels.parquet")
    data = prepare_classifier_data("s3://archive", labels, settings.input_size)
    train_classifier(settings, data, "s3://work/site-detector")
    auc = site_auc(detector.score(target_originals), detector.score(harmonized_sources))
"""

from __future__ import annotations

import io
from collections.abc import Collection

import numpy as np
import numpy.typing as npt
import pandas as pd

from harmonize.errors import ConfigError
from harmonize.io.labels import labels_frame, read_labels
from harmonize.io.storage import Storage
from harmonize.metrics.roc import roc_auc


def site_labels(
    table: pd.DataFrame, target_site: str, sources: Collection[str] | None = None
) -> pd.DataFrame:
    """The labels table relabelled by site: 1 for ``target_site``'s images, 0 for the others'
    (only ``sources``' when given; rows without a site are left out; findings do not matter
    here).

    Raises:
        ConfigError: the table has no image of the target site, or none of another site.
    """
    known = table[table["site"].notna()]
    if sources is not None:
        known = known[known["site"].isin([target_site, *sources])]
    is_target = known["site"] == target_site
    sites = sorted(set(table["site"].dropna().astype(str)))
    if not is_target.any() or is_target.all():
        raise ConfigError(
            f'a site detector needs images of "{target_site}" and of another site; the labels '
            f"table lists {', '.join(sites) or 'no site'}"
        )
    return labels_frame(known.assign(label=is_target.astype(int)).to_dict("records"))


def write_site_labels(
    archive_uri: str,
    target_site: str,
    out_uri: str,
    storage: Storage | None = None,
    sources: Collection[str] | None = None,
) -> str:
    """``site_labels`` of the archive's labels table, written as Parquet to ``out_uri`` (a
    labels table the classifier's data preparation reads); returns ``out_uri``."""
    store = storage or Storage()
    table = site_labels(read_labels(archive_uri, store), target_site, sources)
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    store.write(out_uri, buffer.getvalue())
    return out_uri


def site_auc(target_scores: npt.ArrayLike, other_scores: npt.ArrayLike) -> float:
    """ROC AUC of telling target-site images (scores ``target_scores``) from the others'."""
    target, other = np.ravel(target_scores), np.ravel(other_scores)
    scores = np.concatenate([target, other])
    labels = np.concatenate([np.ones(target.size), np.zeros(other.size)])
    return roc_auc(labels, scores)
