"""Trident nlp."""
