"""The workbench's screens (overview, layers, findings, metrics, export, help) and the plain-data
state, feeds and decision log they share; only the screen modules import Textual."""
