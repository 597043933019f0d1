"""Hardware: presets, lookup, validation and files."""

import json
from fractions import Fraction

import pytest
import sympy as sp
from pydantic import ValidationError

from symcost import DataType, hardware
from symcost import symbols as S
from symcost.errors import HardwareError
from symcost.hardware import Hardware

TERA = 10**12


def h100_fields(**change):
    fields = hardware.H100_SXM.to_dict()
    fields.update(change)
    return fields


@pytest.mark.parametrize(
    ("name", "preset"),
    [("h100", "H100_SXM"), ("H100_SXM", "H100_SXM"), ("h100-sxm5", "H100_SXM"),
     ("a100", "A100_SXM_80GB"), ("tpu-v5e", "TPU_V5E"), ("Trillium", "TPU_V6E"),
     ("mi300x", "MI300X"), ("b200", "B200"), ("h200_sxm", "H200_SXM"), ("v5p", "TPU_V5P")],
)
def test_lookup_by_name(name, preset):
    """Names match case- and punctuation-insensitively, with common aliases."""
    assert hardware.get(name) is hardware.PRESETS[preset]


def test_unknown_name_lists_presets():
    """An unknown name is an error listing every preset."""
    with pytest.raises(ValueError, match="known: A100_SXM_80GB, H100_SXM, H200_SXM, B200, B300, GB200, "
                                         "MI300X, TPU_V5E, TPU_V5P, TPU_V6E"):
        hardware.get("h800")


def test_datasheet_values():
    """Spot checks against the datasheets (dense peaks; bidirectional links halved)."""
    h100, mi300x, v5e = hardware.H100_SXM, hardware.MI300X, hardware.TPU_V5E
    assert h100.peak("bf16") == 989_400_000_000_000  # 1,979 TFLOPS "with sparsity" / 2
    assert h100.peak(DataType.FP8_E5M2) == 1_978_900_000_000_000
    assert h100.scale_up_bandwidth == 450 * 10**9  # NVLink 900 GB/s bidirectional
    assert hardware.H200_SXM.hbm_bandwidth == 4_800 * 10**9
    assert mi300x.peak("bf16") == Fraction("1307.4") * TERA
    assert v5e.hbm_capacity == 16 * 2**30 and v5e.scale_up_domain == 256  # [JAX-TPU] 17.2e9 bytes: 16 GiB
    assert hardware.TPU_V5P.hbm_capacity == 95 * 2**30
    assert hardware.B200.peak("fp8_e4m3") == 4_500 * TERA


def test_every_preset_is_complete_and_exact():
    """Every preset has bf16 and exact positive rates."""
    for hw in hardware.PRESETS.values():
        assert not hw.is_symbolic
        assert hw.peak("bf16") > 0
        for value in hw.to_dict().values():
            if isinstance(value, str) and value != hw.name:
                assert Fraction(value) > 0  # an exact p/q, never a float


def test_missing_dtype_names_chip_and_dtype():
    """A chip without a peak for a dtype says so, listing what it has."""
    with pytest.raises(ValueError, match="TPU_V5E has no peak FLOP/s for fp8_e4m3; it lists: bf16, int8"):
        hardware.TPU_V5E.peak("fp8_e4m3")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hbm_bandwidth": 0}, "hbm_bandwidth must be positive"),
        ({"vector_flops": -1}, "vector_flops must be positive"),
        ({"collective_latency": -1}, "collective_latency must be non-negative"),
        ({"matmul_efficiency": Fraction(3, 2)}, r"matmul_efficiency must be a fraction in \(0, 1\]"),
        ({"scale_up_domain": Fraction(5, 2)}, "scale_up_domain must be a whole number"),
        ({"hbm_capacity": "lots"}, "hbm_capacity must be a number"),
        ({"hbm_capacity": float("nan")}, "hbm_capacity must be finite"),
        ({"peak_flops": {"bf17": 1}}, "unknown data type 'bf17'"),
        ({"peak_flops": {"bf16": 0}}, r"peak_flops\[bf16\] must be positive"),
        ({"peak_flops": {}}, "peak_flops must be a non-empty mapping"),
        ({"hbm_speed": 1}, "hbm_speed"),
    ],
)
def test_bad_fields(change, message):
    """Zero, negative or malformed rates are refused, naming the field."""
    with pytest.raises(ValidationError, match=message):
        Hardware(**h100_fields(**change))


def test_decimal_inputs_are_exact():
    """Floats and strings are read by their decimal digits: 989.4e12 is exactly 9894 * 10^11."""
    hw = Hardware(**h100_fields(peak_flops={"bf16": 989.4e12}, hbm_bandwidth="3.35e12",
                                collective_latency=1.5e-6))
    assert hw.peak("bf16") == 9894 * 10**11
    assert hw.hbm_bandwidth == 335 * 10**10
    assert hw.collective_latency == sp.Rational(3, 2 * 10**6)


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_file_round_trip(tmp_path, suffix):
    """to_file then from_file gives the same chip, exactly."""
    path = tmp_path / f"chip{suffix}"
    hardware.MI300X.to_file(path)
    assert Hardware.from_file(path) == hardware.MI300X


def test_hand_written_json(tmp_path):
    """A hand-written JSON file with decimal numbers loads exactly; the fields it leaves out are
    its base's (H100_SXM's memory efficiency, 0.915 as fitted: presets/h100-sxm.json)."""
    path = tmp_path / "chip.json"
    path.write_text(json.dumps({
        "name": "my-chip", "peak_flops": {"bf16": 5e14, "fp8_e4m3": "1e15"}, "vector_flops": 5e13,
        "hbm_capacity": 96e9, "hbm_bandwidth": 4e12, "scale_up_bandwidth": 4e11,
        "scale_up_domain": 8, "scale_out_bandwidth": 5e10, "collective_latency": "2e-6",
        "matmul_efficiency": "3/4", "base": "h100"}))
    hw = Hardware.from_file(path)
    assert hw.peak("fp8_e4m3") == 10**15 and hw.matmul_efficiency == sp.Rational(3, 4)
    assert hw.memory_efficiency == sp.Rational(183, 200) == hardware.H100_SXM.memory_efficiency


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.json", "{not json", "malformed JSON"),
        ("bad.yaml", "name: [unclosed", "malformed YAML"),
        ("list.json", "[1, 2]", "expected a mapping"),
        ("chip.toml", "", r"hardware files are \.json, \.yaml or \.yml"),
    ],
)
def test_malformed_files(tmp_path, name, text, message):
    """Malformed or unsupported files name the file and the problem."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        Hardware.from_file(path)


def test_incomplete_file(tmp_path):
    """A file missing a field is a validation error naming it."""
    path = tmp_path / "chip.json"
    data = hardware.H100_SXM.to_dict()
    del data["hbm_bandwidth"]
    path.write_text(json.dumps(data))
    with pytest.raises(HardwareError, match=r"chip\.json: missing hbm_bandwidth \(") as info:
        Hardware.from_file(path)
    assert "\n" not in str(info.value)  # one line, not pydantic's report


def test_file_with_a_bad_value_is_one_line_naming_the_field(tmp_path):
    path = tmp_path / "chip.json"
    path.write_text(json.dumps({**hardware.H100_SXM.to_dict(), "hbm_capacity": -1}))
    with pytest.raises(HardwareError, match=r"chip\.json: hbm_capacity: ") as info:
        Hardware.from_file(path)
    assert "\n" not in str(info.value)


def test_a_preset_data_file_loads_through_load_file(tmp_path):
    """``hardware.load_file`` reads the preset format (a value and a source per number) as well as
    the flat one; ``Hardware.from_file`` points at it instead of failing on a missing field."""
    from importlib import resources

    preset = resources.files("symcost.hardware").joinpath("presets", "h100-sxm.json").read_text()
    path = tmp_path / "my-h100.json"
    path.write_text(preset)
    assert hardware.load_file(path) == hardware.H100_SXM
    with pytest.raises(HardwareError, match="preset data file"):
        Hardware.from_file(path)
    flat = tmp_path / "flat.json"
    hardware.H100_SXM.to_file(flat)
    assert hardware.load_file(flat) == hardware.H100_SXM


def test_symbolic_chip():
    """The symbolic chip's rates are the canonical symbols and it cannot be saved."""
    chip = Hardware.symbolic()
    assert chip.is_symbolic and chip.hbm_bandwidth == S.hbm_bandwidth
    assert chip.effective_peak(None) == S.peak_flops
    with pytest.raises(ValueError, match="cannot be saved"):
        chip.to_dict()


def test_link_tier_symbolic_span_is_piecewise():
    """A span SymPy cannot compare with the domain keeps both tiers in a Piecewise: NVLink's 450 GB/s
    inside the 8-GPU domain at the network efficiency fitted on NCCL's single-node table, one
    50 GB/s NIC beyond it at its line rate (scale_out_efficiency 1, presets/shared.json)."""
    chip = hardware.H100_SXM
    bw = chip.link_bandwidth(S.tp)
    assert isinstance(bw, sp.Piecewise)
    assert bw.xreplace({S.tp: 8}) == 450 * 10**9 * chip.network_efficiency and bw.xreplace({S.tp: 16}) == 50 * 10**9


@pytest.mark.parametrize("value", ["9", "sm_90", "90", "9.0.1", 9.0])
def test_compute_capability_must_be_major_dot_minor(value, tmp_path):
    """vLLM's all-reduce size table is keyed by ``"9.0"``-style capabilities: another spelling would
    silently lose it, so it is refused in one line naming the field and the form."""
    from symcost.errors import one_line

    h200 = hardware.get("H200")
    with pytest.raises(ValidationError) as err:
        Hardware(**{**dict(h200), "compute_capability": value})
    assert one_line(err.value) == f"compute_capability must be 'major.minor' (as '9.0'), got {value!r}"
    with pytest.raises(HardwareError, match=r"^compute_capability must be 'major.minor' \(as '9.0'\), got "):
        Hardware.symbolic(realistic=True, compute_capability=value)  # type: ignore[arg-type]
    chip = tmp_path / "chip.json"
    h200.to_file(chip)
    chip.write_text(json.dumps({**json.loads(chip.read_text()), "compute_capability": value}))
    with pytest.raises(HardwareError, match=r"chip.json: compute_capability: compute_capability must be 'major.minor'"):
        Hardware.from_file(chip)
    assert Hardware(**{**dict(h200), "compute_capability": "10.3"}).compute_capability == "10.3"


def test_symbolic_chip_refuses_an_unknown_allreduce_rule():
    with pytest.raises(HardwareError, match=r"^allreduce must be one of nccl, custom, vllm, trtllm-1.0, got 'vlm'$"):
        Hardware.symbolic(realistic=True, allreduce="vlm")  # type: ignore[arg-type]
