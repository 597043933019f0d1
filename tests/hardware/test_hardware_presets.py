"""Hardware presets as data files (symcost/hardware/presets/<chip>.json): a source for every number,
exact values, the datasheet figures, and one clear error for a malformed file."""

import json
import re
from fractions import Fraction
from importlib import resources

import pytest

from symcost import hardware
from symcost.errors import ConfigError
from symcost.hardware import presets

FOLDER = resources.files("symcost.hardware").joinpath("presets")
PETA, TERA, GIGA = 10**15, 10**12, 10**9


def _json(name):
    return json.loads(FOLDER.joinpath(name).read_text(encoding="utf-8"))


def _entries(fields):
    """(field, entry) for every field and every dtype of peak_flops."""
    for field, entry in fields.items():
        if field == "peak_flops":
            yield from ((f"peak_flops[{dt}]", e) for dt, e in entry.items())
        else:
            yield field, entry


def test_preset_files_cite_every_number():
    """The index lists each chip file once; every entry is a value with a source or a shared fact;
    no value is a float; every bracketed citation key is spelled out in shared.json's references."""
    listed = _json("index.json")["presets"]
    files = sorted(p.name for p in FOLDER.iterdir() if p.name.endswith(".json"))
    assert files == sorted([*(f"{n}.json" for n in listed), "index.json", "shared.json"])
    shared = _json("shared.json")
    used = set()
    sources = [e["source"] for e in shared["constants"].values()]
    for name in listed:
        for field, entry in _entries(_json(f"{name}.json")["fields"]):
            if "shared" in entry:
                assert entry["shared"] in shared["constants"], (name, field)
                used.add(entry["shared"])
                continue
            assert entry["source"].strip(), (name, field)
            assert not isinstance(entry["value"], float), (name, field)
            sources.append(entry["source"])
    assert all(not isinstance(e["value"], float) for e in shared["constants"].values())
    assert used == set(shared["constants"])  # every shared fact is used
    cited = {key for s in sources for key in re.findall(r"\[([A-Za-z0-9-]+)\]", s)}
    assert cited <= set(shared["references"]), cited - set(shared["references"])
    assert hardware.names() == [_json(f"{n}.json")["name"] for n in listed]


FITTED = ("matmul_efficiency", "gemm_time", "gemm_memory_efficiency", "matmul_efficiency_8bit", "gemm_time_8bit",
          "quantize_bytes_8bit", "memory_efficiency", "kernel_time", "attention_efficiency", "attention_time",
          "attention_io_efficiency", "attention_memory_efficiency", "attention_decode_time",
          "collective_base_latency", "network_efficiency", "ll_base_latency", "ll_latency", "ll_efficiency",
          "nvls_latency", "nvls_efficiency")


def test_h100_sxm_is_the_datasheet_chip():
    """H100 SXM5, written here independently of the data file: [HOPPER] NVIDIA H100 whitepaper dense
    989.4 TFLOPS bf16/fp16, 1978.9 fp8/int8, 494.7 tf32, 66.9 fp32; [H100-DS] 80 GB, 3.35 TB/s, NVLink
    900 GB/s bidirectional; [DGX-POD] one 400 Gb/s NIC per GPU; [HOPPER] 132 SMs."""
    h100 = hardware.get("h100")
    assert h100.peak("bf16") == h100.peak("fp16") == 989_400_000_000_000
    assert h100.peak("fp8_e4m3") == h100.peak("int8") == 1_978_900_000_000_000
    assert h100.peak("tf32") == 494_700_000_000_000 and h100.peak("fp32") == 66_900_000_000_000
    assert h100.vector_flops == 66_900_000_000_000
    # [H100-DS] "80GB" is five 16 GiB HBM3 stacks: 80 GiB, as [AIC] h100_sxm.yaml (85899345920) and above
    # what [SMI] shows, 81,559 MiB = 85.5e9 bytes (more than 80e9: the decimal reading cannot be the physical size)
    assert h100.hbm_capacity == 80 * 2**30 == 85_899_345_920 and h100.hbm_bandwidth == 3_350_000_000_000
    assert h100.scale_up_bandwidth == 450_000_000_000 and h100.scale_up_domain == 8
    assert h100.scale_out_bandwidth == 50_000_000_000 and h100.compute_units == 132
    # [NCCL] 0.6 us per NVLink hop, 2.7 us per network hop
    assert h100.collective_latency == Fraction(6, 10**7) and h100.scale_out_latency == Fraction(27, 10**7)
    assert h100.runtime.name == "neutral"
    # the kernel and collective terms are fits on NVIDIA's per-op tables, each citing its table
    # (tests/hardware/test_fit.py refits them); a fitted efficiency is a fraction of a peak
    sources = presets.field_sources("H100_SXM")
    for name in FITTED:
        assert sources[name].startswith("fit: ") and "systems/data/h100_sxm/" in sources[name], name
        assert not name.endswith("efficiency") or 0 < getattr(h100, name) <= 1, name


def test_a100_and_tpu_v5p_are_the_datasheet_chips():
    """[A100-DS] A100 SXM 80GB: 312 TFLOPS bf16 dense, 19.5 fp32, 624 TOPS int8, 80 GB, 2,039 GB/s;
    [HGX-A100] 600 GB/s NVLink bidirectional; [DGX-A100] 200 Gb/s per GPU; [A100-WP] 108 SMs.
    [V5P] TPU v5p: 459 TFLOPs bf16, 95 GiB, 2765 GBps, ICI 1200 GBps bidirectional, DCN 50 Gbps."""
    a100 = hardware.get("a100")
    assert a100.peak("bf16") == 312 * TERA and a100.peak("fp32") == 19_500_000_000_000
    assert a100.peak("int8") == 624 * TERA and a100.hbm_capacity == 80 * 2**30  # [AIC] 80GiB; [SMI] 81,920 MiB
    assert a100.hbm_bandwidth == 2039 * GIGA and a100.scale_up_bandwidth == 300 * GIGA
    assert a100.scale_out_bandwidth == 25 * GIGA and a100.compute_units == 108
    # A100 has no NVLink SHARP; its GEMM efficiency is the fit on its own GEMM table
    assert a100.nvls_latency is None and "systems/data/a100_sxm/gemm/" in presets.field_sources("A100_SXM_80GB")[
        "matmul_efficiency"]
    v5p = hardware.get("v5p")
    assert v5p.peak("bf16") == 459 * TERA and v5p.peak("int8") == 918 * TERA
    assert v5p.hbm_capacity == 95 * 2**30 and v5p.hbm_bandwidth == 2765 * GIGA
    assert v5p.scale_up_bandwidth == 600 * GIGA and v5p.scale_up_domain == 8960
    assert v5p.scale_out_bandwidth == Fraction(50, 8) * GIGA and v5p.is_ideal


def test_h200_and_b200_are_the_datasheet_chips():
    """[H200-DS] H200 SXM: 1,979 TFLOPS bf16/fp16, 3,958 fp8/int8, 989 tf32 (all "with sparsity"), 67
    fp32, 141 GB HBM3e, 4.8 TB/s, NVLink 900 GB/s; [HOPPER] the same GH100 compute, dense 989.4.
    [BW-DS] HGX B200 per GPU: 18 PFLOPS fp4, 4.5 PFLOPS bf16/fp16, 9 fp8/int8, 2.2 tf32 (sparse; dense is 1/2), 75
    TFLOPS fp32, 180 GB HBM3e, NVLink 1.8 TB/s. [DGX-POD] 8 GPUs on NVSwitch, one 400 Gb/s NIC each."""
    h200 = hardware.get("h200")
    # [H200-DS] 1,979 TFLOPS sparse / 2 = [HOPPER] 989.4 dense
    assert h200.peak("bf16") == h200.peak("fp16") == 989_400_000_000_000
    # [H200-DS] 3,958 sparse / 2 = [HOPPER] 1978.9 dense
    assert h200.peak("fp8_e4m3") == h200.peak("int8") == 1_978_900_000_000_000
    assert h200.peak("tf32") == 494_700_000_000_000  # [H200-DS] 989 sparse / 2 = [HOPPER] 494.7
    assert h200.peak("fp32") == h200.vector_flops == 66_900_000_000_000  # [H200-DS] 67 = [HOPPER] 66.9
    assert h200.hbm_capacity == 141 * 2**30  # [AIC] 141GiB; [SMI] 143,771 MiB = 150.8e9 > 141e9
    assert h200.hbm_bandwidth == 4_800 * GIGA  # [H200-DS] 4.8 TB/s
    assert h200.scale_up_bandwidth == 450 * GIGA  # [H200-DS] 900 GB/s bidirectional NVLink / 2
    assert h200.scale_up_domain == 8  # [DGX-POD] 8 GPUs, NVSwitch
    assert h200.scale_out_bandwidth == 50 * GIGA  # [DGX-POD] 400 Gb/s / 8 bits
    assert h200.compute_units == 132  # [HOPPER] 132 SMs on SXM5, the H200's die
    b200 = hardware.get("b200")
    assert b200.peak("bf16") == b200.peak("fp16") == 2_250 * TERA  # [BW-DS] 4.5 PFLOPS sparse / 2
    assert b200.peak("fp8_e4m3") == b200.peak("int8") == 4_500 * TERA  # [BW-DS] 9 PFLOPS sparse / 2
    assert b200.peak("tf32") == 1_100 * TERA  # [BW-DS] 2.2 PFLOPS sparse / 2
    assert b200.peak("fp32") == b200.vector_flops == 75 * TERA  # [BW-DS] FP32 75 TFLOPS
    # [BW-DS] FP4 18 PFLOPS sparse / 2 = [DGX-B200-DS] 144 PFLOPS FP4 sparse / 8 GPUs / 2; both FP4
    # formats at that rate, MXFP8 at the FP8 rate ([PTX-MMA])
    assert b200.peak("nvfp4") == b200.peak("mxfp4") == 144 * PETA // 8 // 2 == 9_000 * TERA
    assert b200.peak("mxfp8") == 4_500 * TERA
    assert b200.hbm_capacity == 180 * 2**30  # [AIC] 180GiB; [SMI] 183,359 MiB = 192.3e9 > 180e9
    # hbm_bandwidth left out: [BW-DS] 7.7 TB/s (the file's value) against 8 TB/s elsewhere (DGX B200)
    assert b200.scale_up_bandwidth == 900 * GIGA  # [BW-DS] 1.8 TB/s bidirectional NVLink 5 / 2
    assert b200.scale_up_domain == 8  # [DGX-POD] HGX/DGX B200, 8 GPUs
    assert b200.scale_out_bandwidth == 50 * GIGA  # [DGX-POD] 400 Gb/s / 8 bits


def test_b300_and_gb200_take_aiconfigurators_system_figures():
    """[AIC-B300] aiconfigurator-core 0.12.0 systems/b300_sxm.yaml: bf16 2,250 TFLOPS, fp8 4,500, int8
    153.5, fp4 14,000 (dense; NVIDIA's Blackwell Ultra announcement says 15,000), 7.75 TB/s (HGX B300's
    62 TB/s / 8), mem_capacity 288,400,343,040 B (275,040 MiB, nvidia-smi), NVLink 900 GB/s and 100 GB/s
    scale-out per GPU, 8 GPUs a node. [AIC-GB200] systems/gb200.yaml: bf16 2,500, fp8 and int8 5,000,
    fp4 10,000 TFLOPS, 8 TB/s, 198,674,743,296 B (189,471 MiB), 72 GPUs on NVLink a rack."""
    b300 = hardware.get("b300")
    assert b300.peak("bf16") == b300.peak("fp16") == 2_250 * TERA
    assert b300.peak("fp8_e4m3") == b300.peak("mxfp8") == 4_500 * TERA
    assert b300.peak("int8") == 153_500 * GIGA  # 307 TOPS sparse / 2
    assert b300.peak("nvfp4") == b300.peak("mxfp4") == 14 * PETA
    assert b300.hbm_capacity == 275_040 * 2**20 == 288_400_343_040
    assert b300.hbm_bandwidth == 62 * TERA // 8  # 7.75 TB/s
    assert b300.scale_up_bandwidth == 900 * GIGA and b300.scale_up_domain == 8
    assert b300.scale_out_bandwidth == 100 * GIGA  # 800 Gb/s / 8 bits
    gb200 = hardware.get("gb200")
    assert gb200.peak("bf16") == 2_500 * TERA and gb200.peak("fp8_e4m3") == gb200.peak("int8") == 5 * PETA
    assert gb200.peak("nvfp4") == 10 * PETA
    assert gb200.hbm_capacity == 189_471 * 2**20 == 198_674_743_296
    assert gb200.hbm_bandwidth == 8 * TERA
    assert gb200.scale_up_bandwidth == 900 * GIGA and gb200.scale_up_domain == 72
    # neither yaml lists a tf32 rate: the presets have none rather than a guess
    for chip in (b300, gb200):
        with pytest.raises(Exception, match="no peak FLOP/s for tf32"):
            chip.peak("tf32")


def test_mi300x_is_the_datasheet_chip():
    """[MI300-ROCm] MI300X dense peaks: 1307.4 TFLOPS fp16/bf16, 2614.9 fp8 and int8, 653.7 tf32, 163.4
    fp32 (matrix and vector), 5.3 TB/s, 304 CUs, 8 GPUs fully connected by 7 Infinity Fabric links;
    [MI300-PP] 192 GB HBM3, 128 GB/s per link; [AZURE-MI300] one 400 Gb/s NDR NIC per GPU."""
    mi300x = hardware.get("mi300x")
    assert mi300x.peak("bf16") == mi300x.peak("fp16") == 1_307_400_000_000_000  # [MI300-ROCm] dense
    # [MI300-ROCm] 2614.9 dense
    assert mi300x.peak("fp8_e4m3") == mi300x.peak("int8") == 2_614_900_000_000_000
    assert mi300x.peak("tf32") == 653_700_000_000_000  # [MI300-ROCm] 653.7
    assert mi300x.peak("fp32") == mi300x.vector_flops == 163_400_000_000_000  # [MI300-ROCm] 163.4
    assert mi300x.hbm_capacity == 192 * 2**30  # [ROCM-SMI] 206,141,652,992 bytes > 192e9: 192 GiB
    assert mi300x.hbm_bandwidth == 5_300 * GIGA  # [MI300-ROCm] 5.3 TB/s
    # [MI300-PP] 7 links x 128 GB/s, bidirectional / 2 = 7 x 64 GB/s per direction
    assert mi300x.scale_up_bandwidth == 7 * 64 * GIGA and mi300x.scale_up_domain == 8
    assert mi300x.scale_out_bandwidth == 50 * GIGA  # [AZURE-MI300] 400 Gb/s / 8 bits
    assert mi300x.compute_units == 304 and mi300x.nvls_latency is None  # [MI300-ROCm] 304 CUs; no NVLS


def test_tpu_v5e_and_v6e_are_the_datasheet_chips():
    """[V5E] TPU v5e: 197 TFLOPs bf16, 393 TOPs int8, 16 GB, 819 GBps, ICI 400 GBps bidirectional,
    256-chip pod, 2 x 100 Gbps NIC per 8-chip host. [V6E] TPU v6e: 918 TFLOPs bf16, 1836 TOPs int8,
    32 GB, ICI 800 GBps bidirectional, 256-chip pod, 4 x 200 Gbps NIC per 8-chip host."""
    v5e = hardware.get("v5e")
    assert v5e.peak("bf16") == 197 * TERA and v5e.peak("int8") == 393 * TERA  # [V5E]
    assert v5e.hbm_capacity == 16 * 2**30  # [JAX-TPU] 17.2e9 bytes: 16 GiB (17.18e9), as v5p's 95 GiB
    assert v5e.hbm_bandwidth == 819 * GIGA  # [V5E] 819 GBps
    assert v5e.scale_up_bandwidth == 200 * GIGA  # [V5E] 400 GBps bidirectional ICI / 2
    assert v5e.scale_up_domain == 256  # [V5E] 256-chip pod, 2D torus
    assert v5e.scale_out_bandwidth == Fraction(2 * 100, 8 * 8) * GIGA  # [V5E] 2 x 100 Gb/s / 8 chips / 8 bits
    assert v5e.is_ideal
    v6e = hardware.get("v6e")
    assert v6e.peak("bf16") == 918 * TERA and v6e.peak("int8") == 1_836 * TERA  # [V6E]
    assert v6e.hbm_capacity == 32 * 2**30  # [JAX-TPU] 34.4e9 bytes: 32 GiB (34.36e9)
    # hbm_bandwidth left out: the file's 1640 GBps against the current [V6E] page's 1638 GBps
    assert v6e.scale_up_bandwidth == 400 * GIGA  # [V6E] 800 GBps bidirectional ICI / 2
    assert v6e.scale_up_domain == 256  # [V6E] 256-chip pod, 2D torus
    assert v6e.scale_out_bandwidth == Fraction(4 * 200, 8 * 8) * GIGA  # [V6E] 4 x 200 Gb/s / 8 chips / 8 bits
    assert v6e.is_ideal


def _good():
    return {"name": "TEST", "fields": {
        "peak_flops": {"bf16": {"value": 100, "unit": "TFLOP/s", "source": "test"}},
        "vector_flops": {"value": "25/4", "unit": "TFLOP/s", "source": "test"},
        "hbm_capacity": {"value": 16, "unit": "GB", "source": "test"},
        "hbm_bandwidth": {"value": "0.8", "unit": "TB/s", "source": "test"},
        "scale_up_bandwidth": {"value": 100, "unit": "GB/s", "source": "test"},
        "scale_up_domain": {"value": 8, "source": "test"},
        "scale_out_bandwidth": {"value": 200, "unit": "Gb/s", "source": "test"},
        "collective_latency": {"shared": "ALPHA"},
    }}


def test_a_hand_written_file_loads(tmp_path):
    path = tmp_path / "test.json"
    path.write_text(json.dumps(_good()))
    chip = presets.load(path)
    assert chip.vector_flops == Fraction(25, 4) * TERA and chip.hbm_bandwidth == 800 * GIGA
    assert chip.scale_out_bandwidth == 25 * GIGA and chip.collective_latency == presets.ALPHA


@pytest.mark.parametrize(("field", "entry", "message"), [
    ("hbm_capacity", {"value": 16, "unit": "GB"}, "test.json: hbm_capacity has no source"),
    ("hbm_capacity", {"value": 16.0, "unit": "GB", "source": "x"}, "test.json: hbm_capacity must be an integer"),
    ("hbm_capacity", {"value": "16 GB", "source": "x"}, "test.json: hbm_capacity must be an integer"),
    ("hbm_capacity", {"value": 16, "unit": "GByte", "source": "x"}, "test.json: hbm_capacity: unknown unit"),
    ("hbm_capacity", {"value": 16, "source": "x", "cite": "y"}, "test.json: hbm_capacity: unknown key(s) cite"),
    ("hbm_size", {"value": 16, "source": "x"}, "test.json: unknown field 'hbm_size'"),
    ("collective_latency", {"shared": "BETA"}, "test.json: collective_latency: \"shared\" must"),
    ("memory_efficiency", {"value": "3/2", "source": "x"}, "test.json: memory_efficiency: memory_efficiency must"),
])
def test_a_malformed_file_is_one_clear_error(tmp_path, field, entry, message):
    """Missing source, float value, unknown unit, key or field, unknown shared fact, a value against
    the field's rule: one ConfigError line naming the file and the field."""
    data = _good()
    data["fields"][field] = entry
    path = tmp_path / "test.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as err:
        presets.load(path)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_float_in_the_shared_file_is_rejected(tmp_path):
    path = tmp_path / "shared.json"
    path.write_text(json.dumps({"constants": {"ALPHA": {"value": 6e-7, "unit": "s", "source": "x"}}}))
    with pytest.raises(ConfigError, match=r"^shared.json: ALPHA must be an integer"):
        presets.load_shared(path)


def test_a_preset_chip_is_read_on_first_use(monkeypatch):
    """Issue 23 (the command's start-up): the presets are known by name from their files, in the
    order of index.json, but a chip's file is read and checked only when the chip is first asked
    for, once; the module attributes and ``hardware.get`` return that same chip."""
    index = _json("index.json")["presets"]
    names = [_json(f"{file}.json")["name"] for file in index]
    read = []
    real = presets.load
    monkeypatch.setattr(presets, "load", lambda file, shared=None: read.append(file.name) or real(file, shared))
    fresh = presets.Presets(index)
    assert list(fresh) == names and len(fresh) == len(names) and read == []
    h200 = fresh["H200_SXM"]
    assert read == ["h200-sxm.json"] and fresh["H200_SXM"] is h200 and read == ["h200-sxm.json"]
    assert fresh.get("NO_SUCH_CHIP") is None and "B200" in fresh and read == ["h200-sxm.json"]
    assert hardware.H200_SXM is hardware.get("h200") is presets.H200_SXM is hardware.PRESETS["H200_SXM"]
    assert "H200_SXM" in dir(hardware) and "H200_SXM" in hardware.__all__
    with pytest.raises(AttributeError, match="NO_SUCH_CHIP"):
        hardware.NO_SUCH_CHIP  # noqa: B018


def test_b300_runs_its_nvfp4_gemm_waves_on_148_sms():
    """The shipped B300 (B300 SXM6 AC, the GPU aiconfigurator-core 0.12.0's B300 tables were collected
    on) enables 148 SMs: NVIDIA's 160 are "the full GPU implementation" ("Inside NVIDIA Blackwell
    Ultra", NVIDIA Technical Blog, 2025); measured on the product, 148 (ademeure/QuickRunCUDA,
    b300_clean/B300_TRUE_REFERENCE.md: "NVIDIA B300 SXM6 AC (sm_103a, CC 10.3, 148 SMs ...)").
    By hand: an NVFP4 GEMM m 4,096, n 2,560, k 4,096 in 128 x 256 tiles (matmul_tile_4bit, no
    split-K) is 32 * 10 = 320 tiles; on 148 SMs ceil(320 / 148) = 3 waves (2 on 160), each wave
    148 tiles of 2 * 4,096 * 128 * 256 FLOPs: 2 * 4,096 * 128 * 256 * 148 * 3 = 119,185,342,464.
    The B300 NVFP4 table shows the same steps: at m = 4,096, k = 4,096 n 2,560 takes 44.4 us with
    n 3,072 (45.7 us, 384 tiles, 3 waves), not with n 2,048 (36.2 us, 256 tiles, 2 waves)."""
    from symcost.core.dtypes import DataType
    from symcost.core.ops import Matmul
    from symcost.hardware.kernels import matmul_compute_flops

    b300 = hardware.get("b300")
    assert b300.compute_units == 148
    mm = Matmul("w", m=4096, n=2560, k=4096, dtype_bytes=Fraction(1, 2))
    assert matmul_compute_flops(mm, b300, DataType.NVFP4) == 119_185_342_464
