"""The layer contract (``symcost/layers/base.py``): what every layer type declares."""

import pytest

from symcost.layers import base, catalogue


def test_every_layer_type_declares_hidden_size():
    """Callers read ``hidden_size`` of any layer (the residual stream's width): every type in the
    catalogue has it as a shape field."""
    for name, make in catalogue.LAYER_TYPES.items():
        layer_type = getattr(make, "func", make)
        assert "hidden_size" in layer_type.model_fields, name


def test_a_layer_type_without_hidden_size_fails_when_defined():
    """A layer type that does not declare ``hidden_size`` breaks the contract: the class statement
    raises, before any object is built."""
    with pytest.raises(TypeError, match="Bare declares no hidden_size"):
        class Bare(base.Layer):
            width: int = 8

    class Declared(base.Layer):
        hidden_size: int = 8

    assert Declared().hidden_size == 8
