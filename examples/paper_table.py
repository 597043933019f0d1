"""A booktabs table of the seed layers' per-chip costs under tensor parallelism, for a paper.

Run: python examples/paper_table.py > table.tex && pdflatex table.tex
"""

from symcost import latex
from symcost import symbols as S

body = "\n\n".join([
    r"\section*{Per-chip training cost of transformer layers (Megatron notation)}",
    latex.layer_table(phase="training", parallelism={"tensor_parallel": S.tp}, width=r"\linewidth"),
    r"\section*{Symbols}",
    latex.glossary(notation="megatron"),
])
print(latex.document(body, title="symcost: layer costs"))
