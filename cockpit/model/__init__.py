"""The run model: one in-memory picture of a run that the collectors feed
(runmodel, with curves that stay bounded however long the run), the health
checks that judge it (alerts), the frozen views every display formats (view),
and the list of runs under logs/ (runs).

May import cockpit.collect, cockpit.supervisor and core; never a display
(textual, rich) and never the session, which drives it.
"""
