"""Paylink benchmark: ``python -m bench`` (see README, "Performance")."""
