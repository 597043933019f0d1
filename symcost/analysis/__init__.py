"""Stage 5: questions asked of cost expressions: :mod:`~symcost.analysis.solve` (the largest
integer or smallest degree that fits) and sweeps (:func:`symcost.sweep`, compiled in
:mod:`symcost.core.sweep` because :meth:`LayerMetrics.lambdify` returns one).

Imports core only.
"""
