"""One module per ``mozart`` subcommand; each defines ``register(subparsers)``. See :mod:`mozart.sim.cli`."""
