"""Stage 6: whole steps over the layer contract: the training and inference steps
(:mod:`~symcost.plan.training`, :mod:`~symcost.plan.inference`, what both share in
:mod:`~symcost.plan.pipeline`, all re-exported by :mod:`~symcost.plan.step`), the parallelism
search (:mod:`~symcost.plan.search`) and the fits of the time model against measured steps
(:mod:`~symcost.plan.calibration`, :mod:`~symcost.plan.calibration_inference`).

Imports core, layers (the contract in ``layers.base`` only), hardware, models and analysis.
"""
