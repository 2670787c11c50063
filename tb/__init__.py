"""cocotb testbenches (drivers, monitors, scoreboards) that check the generated RTL against the model."""
