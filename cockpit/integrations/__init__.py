"""Native integrations: the trainers people already run write the cockpit's run
directory themselves, with exact numbers, no stdout parsing.

    from cockpit.integrations.hf import CockpitCallback         # transformers.Trainer
    from cockpit.integrations.lightning import CockpitCallback  # lightning.Trainer

Each writes `events.jsonl` (rank 0) and `ranks/rank-N.jsonl` (every rank under
torchrun) through the same event schema as the core (core.events), into the run
directory the cockpit gave it (COCKPIT_RUN_DIR, set by `cockpit run -- CMD`), else
the one it is given, else logs/<stamp>-<name>/. When they are present the stdout
adapter of a wrapped command stands down for the event types they write.

Imports core's event schema and the standard library only (writer.py); each
integration imports its own library. Never textual, rich or the rest of the cockpit.
"""
