"""`harmonize report`: tables and figures from run manifests."""

from __future__ import annotations

import click

from harmonize.cli.common import URI, LocalPath, storage


@click.command()
@click.argument("manifests", nargs=-1, required=True, type=URI)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=LocalPath(file_okay=False),
    help="Folder for report.html and the PNG figures.",
)
@click.option(
    "--target-site",
    help="The target site's name in the manifests' site column: its images give the in-domain "
    "AUC and the fallback target histogram, and are left out of the method tables.",
)
@click.pass_context
def report(
    ctx: click.Context, manifests: tuple[str, ...], out_dir: str, target_site: str | None
) -> None:
    """Tables and figures from one or more run manifests (Markdown on stdout, HTML in --out)."""
    from harmonize.report import build_report

    result = build_report(list(manifests), out_dir, storage=storage(ctx), target_site=target_site)
    click.echo(result.markdown)
    click.echo(f"\nreport: {result.html_path}", err=True)
