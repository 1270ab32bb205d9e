"""Registers video's recipes and CLI commands with the vlx core (entry point `vlx.plugins`)."""
