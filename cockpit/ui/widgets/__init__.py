"""The TUI's widgets, grouped by area. They only format: each takes a frozen
RunView (cockpit.model.view) from its screen and draws it."""
