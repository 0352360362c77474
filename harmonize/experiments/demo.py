"""`harmonize demo`: the whole product on a small synthetic two-site archive.

synth (shenzhen-like target, mc-like source) → fit every classical method (histogram matching,
Nyúl) on the target → run each over the source site (local Ray, local folder) → report. Prints
where the report is.

Run twice into one folder, the second run skips every object: the archive is kept (the same
settings make the same archive; written again, its files would get new modification times, the
local ETags a run's skip index compares) and the fits are deterministic (the same model hash).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from harmonize.io.storage import Storage, join
from harmonize.methods.fit import fit_classical
from harmonize.models.registry import CLASSICAL, method_names
from harmonize.report import build_report
from harmonize.run.orchestrate import Executor, run_harmonization
from harmonize.run.spec import RunOptions

TARGET_SITE, SOURCE_SITE = "shenzhen-like", "mc-like"
SETTINGS_FILE = "demo-archive.json"  # in the archive: the settings it was made with, once whole


def run_demo(
    out_dir: str,
    *,
    executor: Executor,
    n_per_site: int = 24,
    matrix: int = 1024,
    storage: Storage | None = None,
    echo: Callable[[str], Any] = print,
) -> str:
    """Run the demo into ``out_dir`` with ``executor`` running the stages; returns the path of
    the HTML report."""
    from harmonize.synth import synthesize_archive

    store = storage or Storage()
    started = time.perf_counter()
    archive = join(out_dir, "archive")

    def step(text: str) -> None:
        echo(f"[{time.perf_counter() - started:6.1f} s] {text}")

    settings = json.dumps(
        {"sites": [TARGET_SITE, SOURCE_SITE], "n_per_site": n_per_site, "matrix": matrix, "seed": 0}
    )
    marker = join(archive, SETTINGS_FILE)
    if store.exists(marker) and store.read_text(marker) == settings:
        step(f"reusing the archive {archive} ({n_per_site} images per site, {matrix} px)")
    else:
        step(
            f"synthesizing {n_per_site} images per site ({TARGET_SITE}, {SOURCE_SITE}), "
            f"{matrix} px → {archive}"
        )
        synthesize_archive(
            archive, [TARGET_SITE, SOURCE_SITE], n_per_site, seed=0, storage=store, matrix=matrix
        )
        store.write_text(marker, settings)
    options = RunOptions(labels_uri=join(archive, "labels.parquet"))
    runs = []
    for method in method_names(CLASSICAL):
        model = join(out_dir, "models", method)
        step(f"fitting {method} on the target site")
        fit_classical(method, join(archive, TARGET_SITE), model, storage=store)
        runs.append(join(out_dir, "runs", method))
        step(f"harmonizing the source site with {method} ({executor.name})")
        summary = run_harmonization(
            input_uri=join(archive, SOURCE_SITE),
            out_uri=runs[-1],
            method=method,
            model_uri=model,
            executor=executor,
            storage=store,
            options=options,
        )
        step(summary.line())
    step("writing the report")
    result = build_report(runs, join(out_dir, "report"), storage=store, target_site=TARGET_SITE)
    echo("")
    echo(result.markdown)
    step("done")
    return str(result.html_path)
