"""The Textual app (``ntp-probe tui``). Importing this package does not import torch."""
