"""The training engine. Knows nothing of the cockpit: it never imports textual, rich or cockpit."""
