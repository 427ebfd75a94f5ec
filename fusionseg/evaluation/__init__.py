"""Evaluation of trained variants: sweeps over configs, overrides, seeds and EDS budgets (`sweep`)."""
