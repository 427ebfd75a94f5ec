"""Thin command modules (argument parsing and orchestration) behind ``fusionseg <command>``."""
