"""The cockpit: pre-flight checklists, a supervisor for the trainer, collectors,
a run model, and two displays of it (the TUI and plain lines).

Packages, top to bottom (make lint enforces the direction, see pyproject.toml):
  commands/  one module per CLI command; cli.py parses and dispatches to them
  ui/        the Textual app, screens and widgets     headless.py  plain lines
  checks/    pre- and post-flight checklists          wrap/        any trainer's stdout
  fmt.py     every figure's format                     session.py   collectors -> model
  model/     the run model, health checks, views, the runs list
  supervisor.py  launches, finds and signals the trainer (torchrun too)
  collect/   events follower, samplers, checkpoint and rank readers
core/ (the training engine) sits below all of it and imports none of it.
"""
