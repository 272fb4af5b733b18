"""Trainer presets shipped with the core (``--preset NAME``)."""
