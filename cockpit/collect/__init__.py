"""Collection: what the cockpit reads and samples, as timestamped values that never
raise into a display. The events follower (tail -F of events.jsonl), the log
tail, the checkpoint watcher, the process, system and GPU samplers (one NVML
wrapper with defaults), the per-rank reader under torchrun, and system.jsonl.

Imports only core and the standard and sampling libraries (psutil, pynvml,
watchdog): nothing else of the cockpit, and nothing that draws.
"""
