"""Seawall: find, match, review, take down and report CSAM."""

__version__ = "0.1.0"
