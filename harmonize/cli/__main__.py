"""``python -m harmonize.cli``: the `harmonize` command (Ray Jobs run it so)."""

from harmonize.cli.main import main

if __name__ == "__main__":  # a spawned worker (bench train, bench device) imports, never runs it
    main()
