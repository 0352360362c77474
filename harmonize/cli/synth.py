"""`harmonize synth`: a synthetic multi-site archive, or real PNGs wrapped as DICOM of a site."""

from __future__ import annotations

import os
from importlib.resources import files
from typing import Any

import click

from harmonize.cli.common import URI, LocalPath, absolute, progress_option, storage

DEFAULT_SITES = ("shenzhen-like", "mc-like")


def builtin_sites() -> list[str]:
    """The built-in site profiles' names: the package's ``profiles/*.yaml`` file names (read
    without loading them: ``--help`` lists them)."""
    folder = files("harmonize") / "profiles"
    return sorted(
        e.name.removesuffix(".yaml") for e in folder.iterdir() if e.name.endswith(".yaml")
    )


class Site(click.ParamType):
    """A built-in profile's name, or a profile YAML file (its path made absolute)."""

    name = "name|yaml"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        looks_like_a_path = text.endswith((".yaml", ".yml")) or os.sep in text or "~" in text
        return absolute(text) if looks_like_a_path and text not in builtin_sites() else text


@click.command()
@click.argument("out", type=URI)
@click.option(
    "--site",
    "sites",
    type=Site(),
    multiple=True,
    help=f"Site profile: a built-in ({', '.join(builtin_sites())}) or a profile YAML file "
    f"(repeat) [default: {', '.join(DEFAULT_SITES)}].",
)
@click.option("--n-per-site", type=click.IntRange(1), default=16, help="Images per site.")
@click.option("--seed", type=int, default=0, help="Random seed (same seed, same archive).")
@click.option("--matrix", type=click.IntRange(64), help="Image side (px) [default: the profiles'].")
@click.option(
    "--truth-site",
    type=Site(),
    help="Also image every patient of the other sites at this site (same anatomy, findings and "
    "dose; pixel-aligned): OUT/truth/<site>/, linked by truth_path in the labels table.",
)
@click.option(
    "--from-png",
    "from_png",
    type=LocalPath(exists=True, file_okay=False),
    help="Wrap the real PNGs in this folder as DICOM under --site.",
)
@progress_option()
@click.pass_context
def synth(
    ctx: click.Context,
    out: str,
    sites: tuple[str, ...],
    n_per_site: int,
    seed: int,
    matrix: int | None,
    truth_site: str | None,
    from_png: str | None,
    progress: bool,
) -> None:
    """Write a synthetic multi-site chest radiograph archive (DICOM + labels) to OUT: DICOM
    under OUT/<site>/, the labels table (image_id, site, label, path, truth_path) in
    OUT/labels.parquet."""
    from harmonize import synth as synth_mod

    store = storage(ctx)
    if from_png:
        if len(sites) != 1:
            raise click.UsageError("--from-png needs exactly one --site (the profile to wrap with)")
        if truth_site:
            raise click.UsageError("--truth-site needs synthetic patients; drop --from-png")
        table = synth_mod.wrap_pngs(from_png, out, sites[0], storage=store, matrix=matrix)
    else:
        chosen = list(sites or DEFAULT_SITES)
        table = synth_mod.synthesize_archive(
            out,
            chosen,
            n_per_site,
            seed,
            storage=store,
            matrix=matrix,
            progress=progress,
            truth_site=truth_site,
        )
    counts = table.groupby("site").size().to_dict()
    click.echo(f"wrote {len(table)} images to {out} ({counts}); labels: {out}/labels.parquet")
