"""ptytui: a terminal workbench for debugging ptychography reconstruction models."""

__version__ = "0.1.0"
