"""Checklists: the engine that loads a YAML checklist and runs its steps (engine),
what every check is made of (base), the registry of kinds by name (registry),
the data checks and the secrets scanner (data, secrets, secrets_files), the
cost checks (cost: sizing, the probe, disk, GPU), the post-flight checks of a
finished run (postflight, postflight_load), and the pre-flight as a library
(preflight: the summary a person reads, preflight.json).

May import cockpit.fmt, cockpit.supervisor, cockpit.collect and core; never a
display: the command prints, the screen draws.
"""
