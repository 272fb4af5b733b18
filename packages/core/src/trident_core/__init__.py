"""Trident core."""
