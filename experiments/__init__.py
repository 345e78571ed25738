"""Reproducible experiments: one module per figure or table; ``python -m experiments`` runs them all.

See ``experiments/common.py`` for the contract every experiment module follows.
"""
