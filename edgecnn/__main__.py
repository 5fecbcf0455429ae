"""`python -m edgecnn` (and `torchrun -m edgecnn`) runs the CLI."""

from edgecnn.cli import main

if __name__ == "__main__":  # not when a spawned training process re-imports this module
    main()
