"""Synthetic data sets for trying the detectors on realistic tables."""
