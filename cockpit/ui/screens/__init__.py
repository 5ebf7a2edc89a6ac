"""The TUI's screens, one per mode (monitor, runs) plus the ones pushed on top
(compare, dialogs)."""
