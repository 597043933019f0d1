"""Stage 7: presentation: LaTeX (:mod:`~symcost.report.latex`) and charts
(:mod:`~symcost.report.plots`, needs matplotlib). Imports every stage below, never the CLI."""
