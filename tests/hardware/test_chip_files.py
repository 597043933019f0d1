"""Chip files a user writes (a flat mapping of Hardware fields, JSON or YAML): the shipped examples,
one per family, load; every missing datasheet field is named in one line; the efficiency model is
a named base chip's or, said so, none (issue 20 item 17)."""

import json
from fractions import Fraction
from pathlib import Path

import pytest
import yaml

from symcost import hardware, models
from symcost.errors import HardwareError
from symcost.hardware import Hardware

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "chips"
TERA, GIGA = 10**12, 10**9

DATASHEET = [name for name, field in Hardware.model_fields.items() if field.is_required()]
"""The fields every chip file gives (the datasheet's), in the class's order."""


def _write(tmp_path, data, name="chip.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if name.endswith(".yaml") else json.dumps(data))
    return path


def _datasheet(**changes):
    """A chip file's datasheet part: the H100 SXM's figures (to_dict writes them in base units)."""
    full = hardware.H100_SXM.to_dict()
    return {**{k: full[k] for k in DATASHEET}, "name": "my-chip", **changes}


# -- the examples ------------------------------------------------------------------------------------


def test_one_example_per_family():
    """examples/chips holds one file per family the presets cover: NVIDIA, AMD and Google TPUs."""
    names = sorted(p.name for p in EXAMPLES.glob("*.yaml"))
    assert [n.split("-")[0] for n in names] == ["amd", "google", "nvidia"], names


def test_nvidia_example_h100_pcie():
    """H100 PCIe, by the H100 datasheet's PCIe column (tensor peaks "with sparsity", halved): bf16
    1,513 / 2 = 756.5 TFLOP/s, fp8 3,026 / 2 = 1,513; 80 GB at 2 TB/s; a two-GPU NVLink bridge at
    600 GB/s both ways, 300 per direction; 114 SMs (Hopper whitepaper). The rest of the efficiency
    model is the H100 SXM's (base: h100)."""
    chip = hardware.load_file(EXAMPLES / "nvidia-h100-pcie.yaml")
    assert chip.peak("bf16") == Fraction("756.5") * TERA and chip.peak("fp8_e4m3") == 1513 * TERA
    assert (chip.hbm_capacity, chip.hbm_bandwidth) == (80 * GIGA, 2 * TERA)
    assert (chip.scale_up_bandwidth, chip.scale_up_domain, chip.compute_units) == (300 * GIGA, 2, 114)
    h100 = hardware.H100_SXM
    for field in ("matmul_efficiency", "matmul_efficiency_8bit", "memory_efficiency", "attention_efficiency",
                  "kernel_time", "collective_base_latency", "runtime"):
        assert getattr(chip, field) == getattr(h100, field), field
    assert chip.efficiency_from == "base H100_SXM"


def test_amd_example_mi325x():
    """MI325X (AMD's product page): MI300X's compute (bf16 1,307.4 TFLOP/s dense), 256 GB HBM3E at
    6 TB/s; the efficiency model is the MI300X preset's."""
    chip = hardware.load_file(EXAMPLES / "amd-mi325x.yaml")
    assert chip.peak("bf16") == Fraction("1307.4") * TERA
    assert (chip.hbm_capacity, chip.hbm_bandwidth) == (256 * GIGA, 6 * TERA)
    assert chip.memory_efficiency == hardware.MI300X.memory_efficiency and chip.compute_units == 304
    assert chip.efficiency_from == "base MI300X"


def test_google_example_tpu_v4_is_ideal_by_choice():
    """TPU v4 (Google Cloud's TPU v4 page): 275 TFLOP/s bf16 and int8, 32 GiB HBM2 at 1,200 GB/s, a
    4,096-chip pod; the file says ideal: true (no efficiency model, as the TPU presets)."""
    chip = hardware.load_file(EXAMPLES / "google-tpu-v4.yaml")
    assert chip.peak("bf16") == chip.peak("int8") == 275 * TERA
    assert (chip.hbm_capacity, chip.hbm_bandwidth, chip.scale_up_domain) == (32 * 2**30, 1200 * GIGA, 4096)
    assert chip.is_ideal and chip.efficiency_from == "ideal"


def test_every_example_runs_in_the_report(capsys):
    """Each example drives the command, whose header names the chip and where its efficiency model
    comes from."""
    from symcost.cli import main

    def main_run(capsys, *args):
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    for path, origin in ((EXAMPLES / "nvidia-h100-pcie.yaml", "efficiency model: base H100_SXM"),
                         (EXAMPLES / "amd-mi325x.yaml", "efficiency model: base MI300X"),
                         (EXAMPLES / "google-tpu-v4.yaml", "efficiency model: ideal")):
        code, out, err = main_run(capsys, "report", "--hardware", str(path), "--phase", "decode")
        assert code == 0, err
        assert origin in out.splitlines()[0], out.splitlines()[0]
    _, out, _ = main_run(capsys, "report", "--phase", "decode")
    assert "efficiency model" not in out.splitlines()[0]  # a preset's header is unchanged


def test_the_2_tb_s_chip_no_longer_beats_the_h100():
    """Decode at batch 1 reads every weight: with the H100's efficiency model, the PCIe part's
    2 TB/s is slower than the SXM's 3.35 TB/s. The same datasheet left ideal (what leaving the
    efficiency fields out used to give, silently) is faster than itself with them: 16 GB of
    weights at 2 TB/s is 8.0 ms, at the fitted GEMM share of it more."""
    model = models.get("llama-3-8b")
    pcie = hardware.load_file(EXAMPLES / "nvidia-h100-pcie.yaml")
    sheet = {k: v for k, v in pcie.to_dict().items() if k in DATASHEET}
    roofline = Hardware.from_mapping({**sheet, "name": "roofline", "ideal": True})

    def tpot(chip):
        return float(model.inference_step(chip, 1, 8192).tpot)

    assert tpot(hardware.H100_SXM) < tpot(pcie) and tpot(roofline) < tpot(pcie)
    assert 2 * 8.03e9 / 2e12 < tpot(roofline) < 1.1 * 2 * 8.03e9 / 2e12


# -- what a file must say -----------------------------------------------------------------------------


def test_every_missing_field_in_one_line(tmp_path):
    """A file with a name and nothing else: the eight other datasheet fields, all in one line."""
    with pytest.raises(HardwareError) as info:
        Hardware.from_file(_write(tmp_path, {"name": "x", "base": "h100"}))
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{tmp_path / 'chip.yaml'}: missing ")
    assert all(field in message for field in DATASHEET if field != "name")
    assert len(DATASHEET) == 9


def test_an_efficiency_model_must_be_chosen(tmp_path):
    """Datasheet fields only: neither base nor ideal is refused, naming both; both together too."""
    with pytest.raises(HardwareError, match=r"chip\.yaml: no efficiency model: .*'base: h100'.*'ideal: true'") as info:
        Hardware.from_file(_write(tmp_path, _datasheet()))
    assert "\n" not in str(info.value)
    with pytest.raises(HardwareError, match="one of base and ideal"):
        Hardware.from_file(_write(tmp_path, {**_datasheet(), "base": "h100", "ideal": True}))
    with pytest.raises(HardwareError, match="ideal must be true or false"):
        Hardware.from_file(_write(tmp_path, {**_datasheet(), "ideal": "yes"}))
    with pytest.raises(HardwareError, match=r"base: unknown chip 'h800'.*known: A100_SXM_80GB"):
        Hardware.from_file(_write(tmp_path, {**_datasheet(), "base": "h800"}))


def test_base_supplies_every_field_the_file_leaves_out(tmp_path):
    """Every field with a default that the file does not set is the base's, whatever the fields are
    (checked over Hardware's own field list); what the file sets stays the file's."""
    chip = Hardware.from_file(_write(tmp_path, {**_datasheet(hbm_bandwidth=2 * TERA), "base": "h200",
                                                "memory_efficiency": "4/5"}))
    h200 = hardware.get("h200")
    left_out = [f for f in Hardware.model_fields if f not in DATASHEET and f != "memory_efficiency"]
    assert left_out and all(getattr(chip, f) == getattr(h200, f) for f in left_out)
    assert chip.memory_efficiency == Fraction(4, 5) and chip.hbm_bandwidth == 2 * TERA
    assert chip.name == "my-chip"


def test_ideal_leaves_the_roofline(tmp_path):
    chip = Hardware.from_file(_write(tmp_path, {**_datasheet(), "ideal": True}, "chip.json"))
    assert chip.is_ideal and chip.efficiency_from == "ideal"


def test_a_complete_file_needs_no_choice(tmp_path):
    """A file that sets every field (what to_file writes) is taken as it is."""
    hardware.H100_SXM.to_file(tmp_path / "h100.yaml")
    chip = Hardware.from_file(tmp_path / "h100.yaml")
    assert chip == hardware.H100_SXM and chip.efficiency_from is None


def test_every_bad_value_in_one_line(tmp_path):
    """Two bad values: both named, in one line."""
    path = _write(tmp_path, {**_datasheet(hbm_capacity=-1, vector_flops="fast"), "base": "h100"})
    with pytest.raises(HardwareError) as info:
        Hardware.from_file(path)
    message = str(info.value)
    assert "\n" not in message and "hbm_capacity" in message and "vector_flops" in message
