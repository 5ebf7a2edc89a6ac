"""One module per `cockpit` command (run, watch, runs, preflight, postflight,
export, verify, validate), plus what the commands that follow a run share
(follow). The top layer: a command may import anything of the cockpit; nothing
imports a command but the CLI, by name.
"""
