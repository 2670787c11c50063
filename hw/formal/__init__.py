"""Formal harnesses of the switch's blocks (one per block) and the mutants that show each property bites."""
