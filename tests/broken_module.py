"""A module that fails at import, as a broken dependency would."""

raise RuntimeError("broken_module cannot be imported: its configuration is missing")
