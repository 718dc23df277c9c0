"""Widgets of the probing app. They render a ``ProbeSession`` they are given and never run the model."""
