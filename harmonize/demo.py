"""`harmonize demo`: the whole product on a small synthetic two-site archive.

synth (shenzhen-like target, mc-like source) → fit histogram matching and Nyúl on the target →
run both over the source site (local Ray, local folder) → report. Prints where the report is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harmonize.io.storage import Storage, join
from harmonize.methods.fit import fit_classical
from harmonize.report import build_report
from harmonize.run.orchestrate import Executor, run_harmonization
from harmonize.run.spec import RunOptions

TARGET_SITE, SOURCE_SITE = "shenzhen-like", "mc-like"
DEMO_METHODS = ("histogram", "nyul")


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

    step(
        f"synthesizing {n_per_site} images per site ({TARGET_SITE}, {SOURCE_SITE}), "
        f"{matrix} px → {archive}"
    )
    synthesize_archive(
        archive, [TARGET_SITE, SOURCE_SITE], n_per_site, seed=0, storage=store, matrix=matrix
    )
    runs = []
    for method in DEMO_METHODS:
        model = join(out_dir, "models", method)
        step(f"fitting {method} on the target site")
        fit_classical(method, join(archive, TARGET_SITE), model, storage=store)
        run_out = join(out_dir, "runs", method)
        step(f"harmonizing the source site with {method} ({executor.name})")
        summary = run_harmonization(
            input_uri=join(archive, SOURCE_SITE),
            out_uri=run_out,
            method=method,
            model_uri=model,
            executor=executor,
            storage=store,
            options=RunOptions(labels_uri=join(archive, "labels.parquet")),
        )
        step(summary.line())
        runs.append(run_out)
    report_dir = str(Path(out_dir) / "report")
    step("writing the report")
    result = build_report(runs, report_dir, storage=store, target_site=TARGET_SITE)
    echo("")
    echo(result.markdown)
    step("done")
    return str(result.html_path)
