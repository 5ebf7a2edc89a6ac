"""Any trainer: `cockpit run -- CMD` turns a command's stdout into the same events
our core writes. The stdout adapters by format (adapters/), the thread that
follows stdout.log into events.jsonl exactly once (wrapped), and its saved read
offset and parser state (state).

May import cockpit.supervisor and core; never a display or the session.
"""
