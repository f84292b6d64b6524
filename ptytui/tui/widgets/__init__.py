"""Reusable pieces of the workbench: stats table, half-block patch image, layer tree, finding
card, positions grid, FRC plot. Widgets show the data they are given and never call the engine."""
