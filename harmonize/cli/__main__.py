"""``python -m harmonize.cli``: the `harmonize` command (Ray Jobs run it so)."""

from harmonize.cli.main import main

main()
