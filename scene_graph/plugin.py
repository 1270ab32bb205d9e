"""Registers scene_graph's recipes and CLI commands with the vlx core (entry point `vlx.plugins`)."""
