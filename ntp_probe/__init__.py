"""ntp-probe: see why next-token prediction with teacher forcing fails to learn planning."""

__version__ = "0.1.0"
