"""Trident audio."""
