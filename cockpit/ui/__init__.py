"""The TUI (Textual): the app with its modes and global keys (app), one screen per
mode (screens/), the panels grouped by area (widgets/), the worker that turns
the session into frozen views for the screen (pump), and the styles (tcss/).

Widgets only format a RunView; they never read files, sample or signal. May
import cockpit.session, cockpit.model, cockpit.checks, cockpit.fmt and
cockpit.supervisor; never the samplers or NVML directly.
"""
