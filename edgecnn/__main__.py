"""`python -m edgecnn` (and `torchrun -m edgecnn`) runs the CLI."""

from edgecnn.cli import main

main()
