"""Stage 1, the vocabulary every later stage speaks: canonical symbols, data types, phases,
parallel degrees, exact arithmetic with its recorded assumptions, the ops and collectives layers
emit, the compiled numeric paths, :class:`~symcost.core.metrics.LayerMetrics`, and how people
spell preset names (:mod:`~symcost.core.names`).

Imports only :mod:`symcost.errors`. Hardware is reached through the protocol in
:mod:`symcost.core.binding`, never by import.
"""
