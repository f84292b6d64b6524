"""What the user hands ptytui: the workspace (ptytui.toml), NPZ splits and their grouping, saved
models and their cards, and the session folder (decisions, saved diagnosis)."""
