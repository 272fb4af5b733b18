"""Trident nlp: intent classification with out-of-scope detection."""
