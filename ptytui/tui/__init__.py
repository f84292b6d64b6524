"""The workbench (Textual): the app, its engine feeds and state, screens and widgets. Only this package
imports Textual."""
