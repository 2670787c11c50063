"""Tool side of Mozart: toolchain discovery, Verilog generation, co-simulation runs and the ``mozart`` CLI."""
