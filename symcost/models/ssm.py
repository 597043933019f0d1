"""Builders for state-space and hybrid models: pure Mamba-2 stacks and Jamba/Nemotron-H-like hybrids.

A pure Mamba-2 model (mamba_ssm's ``MambaLMHeadModel`` with ``ssm_cfg={"layer": "Mamba2"}`` and
``d_intermediate=0``) is an embedding, L :class:`~symcost.models.model.MixerBlock` s around a
:class:`~symcost.layers.mamba2.Mamba2Layer`, a final RMSNorm and a (tied) LM head.

A hybrid is any mix of block groups in :class:`~symcost.models.model.Model`'s ``blocks``:
:func:`hybrid` builds the common case of Mamba-2 mixer blocks, attention blocks and MLP blocks
(Nemotron-H: each layer one of Mamba-2, attention or MLP); for Jamba-like layers (a mixer and an
MLP/MoE in one block) pass ``TransformerBlock(attention=Mamba2Layer(...), mlp=...)`` yourself.

NB: blocks are grouped by kind, ``(block, count)``; the interleaving order changes no cost but the
pipeline stages a layer lands on (stages take consecutive groups).

>>> from symcost.models import ssm
>>> tiny = ssm.mamba2(hidden_size=64, num_layers=2, vocab_size=100, head_dim=32, state_size=16,
...                   chunk_size=8)
>>> m = tiny.blocks[0][0].mixer
>>> (m.num_heads, m.head_dim, m.inner_size)           # expand 2: d = 2h = 128 = 4 heads of 32
(4, 32, 128)
"""

from __future__ import annotations

from typing import Any, Optional

from ..core._expr import as_expr, check_divides
from ..core.parallelism import Parallelism, ParallelismLike
from ..layers.attention import GroupedQueryAttentionLayer
from ..layers.embedding import EmbeddingLayer, LMHeadLayer
from ..layers.mamba2 import Mamba2Layer
from ..layers.mlp import Activation, MLPLayer
from ..layers.norm import NormLayer
from .model import MixerBlock, Model, resolve_causal

__all__ = ["hybrid", "mamba2", "mamba2_layer"]


def mamba2_layer(hidden_size: Any, expand: Any = 2, head_dim: Any = 64, state_size: Any = 128,
                 num_groups: Any = 1, conv_kernel: Any = 4, chunk_size: Any = 256,
                 ssm_state_dtype: Optional[str] = None, parallelism: ParallelismLike = None) -> Mamba2Layer:
    """A Mamba-2 mixer from mamba_ssm's arguments: ``d_inner = expand * hidden_size`` split into
    ``d_inner / head_dim`` heads (the defaults are ``mamba_ssm.modules.mamba2.Mamba2``'s).
    ``expand`` is exact (an int, a ``Fraction`` or SymPy): a float is refused in one line.

    >>> layer = mamba2_layer(2560)            # mamba2-2.7b: d_inner 5120, 80 heads of 64
    >>> layer.num_heads, layer.head_dim
    (80, 64)
    >>> mamba2_layer(2560, expand=1.5)
    Traceback (most recent call last):
    ...
    symcost.errors.ConfigError: expand must be exact (int, fractions.Fraction or SymPy), got the float 1.5
    """
    inner = as_expr(expand, "expand") * hidden_size
    check_divides(inner, head_dim, "expand * hidden_size", by="head_dim")
    return Mamba2Layer(hidden_size=hidden_size, num_heads=inner / head_dim, head_dim=head_dim,
                       state_size=state_size, num_groups=num_groups, conv_kernel=conv_kernel,
                       chunk_size=chunk_size, ssm_state_dtype=ssm_state_dtype,
                       parallelism=Parallelism.coerce(parallelism))


def _ends(par: Parallelism, hidden_size: Any, vocab_size: Any, tied: bool) -> dict[str, Any]:
    return {
        "embedding": EmbeddingLayer(vocab_size=vocab_size, hidden_size=hidden_size, parallelism=par),
        "final_norm": NormLayer(hidden_size=hidden_size, kind="rmsnorm", parallelism=par),
        "lm_head": LMHeadLayer(vocab_size=vocab_size, hidden_size=hidden_size, tied=tied, parallelism=par),
    }


def mamba2(hidden_size: Any, num_layers: Any, vocab_size: Any, expand: Any = 2, head_dim: Any = 64,
           state_size: Any = 128, num_groups: Any = 1, conv_kernel: Any = 4, chunk_size: Any = 256,
           tied: bool = True, ssm_state_dtype: Optional[str] = None, parallelism: ParallelismLike = None,
           causal: Optional[bool] = None, name: str = "mamba2") -> Model:
    """A pure Mamba-2 language model (mamba_ssm ``MambaLMHeadModel``): RMSNorm + Mamba-2 mixer
    blocks, tied embeddings by default. ``vocab_size`` is the padded one (mamba_ssm pads to
    ``pad_vocab_size_multiple``). ``causal`` is accepted for the preset registry's sake and
    changes nothing: there is no attention.

    Parameters ``V h + L (h + P_mixer) + h`` (tied), ``P_mixer`` as in
    :attr:`Mamba2Layer.num_params`.

    >>> m = mamba2(hidden_size=2560, num_layers=64, vocab_size=50288)   # mamba2-2.7b's config.json
    >>> int(m.parameter_count)                # 64 x 40,216,560 + 50,288 x 2,560 + 2,560
    2702599680
    """
    del causal  # no attention: nothing is masked
    par = Parallelism.coerce(parallelism)
    mixer = mamba2_layer(hidden_size, expand, head_dim, state_size, num_groups, conv_kernel, chunk_size,
                         ssm_state_dtype, par)
    block = MixerBlock(mixer=mixer, norm_kind="rmsnorm", parallelism=par)
    return Model(name=name, blocks=((block, num_layers),), **_ends(par, hidden_size, vocab_size, tied))


def hybrid(hidden_size: Any, vocab_size: Any, mamba_layers: Any, attention_layers: Any, mlp_layers: Any,
           num_heads: Any, num_kv_heads: Any, intermediate_size: Any, head_dim: Any = None,
           expand: Any = 2, ssm_head_dim: Any = 64, state_size: Any = 128, num_groups: Any = 1,
           conv_kernel: Any = 4, chunk_size: Any = 256, activation: Activation = "relu",
           tied: bool = False, ssm_state_dtype: Optional[str] = None, parallelism: ParallelismLike = None,
           causal: Optional[bool] = None, name: str = "hybrid") -> Model:
    """A Nemotron-H-like hybrid: ``mamba_layers`` Mamba-2 blocks, ``attention_layers`` GQA blocks
    (flash, so ``causal`` resolves to ``True``) and ``mlp_layers`` MLP blocks (Nemotron-H's
    squared-ReLU MLP is plain, two projections; ``activation`` names the non-linearity's cost),
    each pre-norm with its own residual. Group counts of zero are left out.

    >>> m = hybrid(hidden_size=64, vocab_size=100, mamba_layers=4, attention_layers=1,
    ...            mlp_layers=5, num_heads=4, num_kv_heads=2, intermediate_size=256,
    ...            ssm_head_dim=32, state_size=16, chunk_size=8)
    >>> [type(b.mixer).__name__ for b, _ in m.blocks], int(m.num_layers)
    (['Mamba2Layer', 'GroupedQueryAttentionLayer', 'MLPLayer'], 10)
    """
    par = Parallelism.coerce(parallelism)
    mixers = [
        (mamba2_layer(hidden_size, expand, ssm_head_dim, state_size, num_groups, conv_kernel, chunk_size,
                      ssm_state_dtype, par), mamba_layers),
        (GroupedQueryAttentionLayer(hidden_size=hidden_size, num_heads=num_heads, num_kv_heads=num_kv_heads,
                                    head_dim=head_dim, causal=resolve_causal(causal, True), parallelism=par),
         attention_layers),
        (MLPLayer(hidden_size=hidden_size, intermediate_size=intermediate_size, activation=activation,
                  parallelism=par), mlp_layers),
    ]
    blocks = tuple((MixerBlock(mixer=layer, norm_kind="rmsnorm", parallelism=par), n)
                   for layer, n in mixers if n != 0)
    return Model(name=name, blocks=blocks, **_ends(par, hidden_size, vocab_size, tied))
