"""The cockpit: CLI, pre-flight, supervisor, collectors, TUI and headless displays."""
