"""Amaranth 0.5 hardware of the Mozart wafer: switch, expert chiplet, memory controller, root and the wafer."""
