"""Trident vision."""
