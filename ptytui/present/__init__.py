"""Plain-text presentation shared by the headless commands and the workbench: number formats,
severity symbols and styles (Rich only, never Textual)."""
