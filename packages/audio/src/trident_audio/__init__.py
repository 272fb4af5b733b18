"""Trident audio: CTC speech recognition (log-mel + Conformer) from WAV/FLAC manifests to transcripts."""
