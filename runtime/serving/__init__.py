"""The serving floor: a Triton model repository and the `edgecnn serve` server. Built on the core only."""
