"""What every subcommand of the ``symcost`` command shares: resolving options, one-line errors,
numbers for JSON and for people."""

from __future__ import annotations

import argparse
import json
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, NoReturn, Optional, Sequence

from .. import errors as symcost_errors
from ..core.names import keyed, lookup

if TYPE_CHECKING:
    from ..hardware import Hardware
    from ..models.model import Model

# NB: building the parser and reporting a bad option import no SymPy (``symcost --help`` is
# instant): the library is imported inside the functions that resolve options and print numbers.

DEFAULT_MODEL = "llama-3-8b"
DEFAULT_HARDWARE = "H100_SXM"
DTYPES = ["fp32", "tf32", "bf16", "fp16", "fp8_e4m3", "fp8_e5m2", "int8", "int4", "nvfp4", "mxfp4",
          "mxfp8"]
"""The values of :class:`~symcost.core.dtypes.DataType`, in its order (a test keeps them equal)."""
CHUNK_HELP = ("prefill in chunks of N tokens per sequence, as vLLM and SGLang run it (default: the whole "
              "prompt at once)")


class UsageError(Exception):
    """A bad option: printed as one line, exit code 2."""


def one_line(err: Exception, names: Mapping[str, str] | None = None) -> str:
    """An error as one line; a pydantic ValidationError as its first error's field and message.
    ``names`` renames the fields a symcost error names (:meth:`~symcost.errors.SymcostError.renamed`)."""
    errors = getattr(err, "errors", None)
    cause = symcost_errors.symcost_error(err)
    msg = cause.renamed(names).line() if cause is not None and names else symcost_errors.one_line(err)
    if callable(errors):
        loc = ".".join(str(x) for x in errors()[0].get("loc", ()))
        return f"{loc}: {msg}" if loc and loc not in msg else msg
    return msg


def option_message(err: Exception, field: str) -> str:
    """``err`` as one line for the option that set ``field``: without naming the field when the
    error is about it (the option names it), else as :func:`one_line` gives it."""
    cause = symcost_errors.symcost_error(err)
    if cause is not None and cause.field == field and not cause.context:
        return cause.line(field=False)
    return one_line(err)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2
        raise UsageError(message)


# -- resolving options --------------------------------------------------------------------------


# NB: the library's field names in a config's own words, so an error names the key to fix
_HF_KEYS = {"num_heads": "num_attention_heads", "num_kv_heads": "num_key_value_heads",
            "num_layers": "num_hidden_layers"}


def model_names() -> list[str]:
    """The model presets' names, read from ``models/presets/index.json`` (no SymPy; a test keeps
    them equal to :func:`symcost.models.names`)."""
    index = Path(__file__).resolve().parent.parent / "models" / "presets" / "index.json"
    return list(json.loads(index.read_text(encoding="utf-8"))["presets"])


def _preset_key(name: str) -> str:
    return name.strip().lower().replace("_", "-")  # as models.registry matches a name


def _check_model_name(name: str) -> None:
    if _preset_key(name) not in model_names():
        raise UsageError(f"argument --model: unknown model {name!r} (choose from {', '.join(model_names())}, "
                         "or a config.json path)")


def check_names(args: argparse.Namespace) -> None:
    """The ``--model`` and ``--hardware`` preset names of a parsed command, checked from the
    presets' index files before anything loads SymPy (a file path is checked when it is read)."""
    model, chip = getattr(args, "model", None), getattr(args, "hardware", None)
    if isinstance(model, str) and not (Path(model).suffix == ".json" or Path(model).exists()):
        _check_model_name(model)
    if isinstance(chip, str):
        _check_chip_name(chip)


def model_arg(name: str, args: argparse.Namespace, option: str = "--model") -> Model:
    """The model ``option`` names (a preset or a config.json read with ``--ignore-hf-keys``), with
    ``--window``/``--global-every`` and ``--kv-dtype`` applied for ``--model``."""
    model = _model(name, getattr(args, "ignore_hf_keys", None) or [], option)
    if option != "--model":
        return model
    model = windowed(model, args)
    kv = getattr(args, "kv_dtype", None)
    if kv is None:
        return model
    try:
        return model.with_kv_cache_dtype(kv)
    except ValueError as err:
        raise UsageError(f"argument --kv-dtype: {option_message(err, 'kv_cache_dtype')}") from None


def windowed(model: Model, args: argparse.Namespace) -> Model:
    """``model`` with the sliding window of ``--window`` (on every attention layer, or every layer
    but each ``--global-every``-th: :meth:`symcost.models.model.Model.with_window`)."""
    window, every = getattr(args, "window", None), getattr(args, "global_every", None)
    if window is None:
        if every is not None:
            raise UsageError("argument --global-every: needs --window (the local layers' window)")
        return model
    if window == "w":
        from ..core import symbols as sym

        window = sym.window
    try:
        return model.with_window(window, global_every=every)
    except ValueError as err:
        raise UsageError(f"argument --window: {option_message(err, 'window')}") from None


def _model(name: str, ignore: list[str], option: str) -> Model:
    path = Path(name)
    if path.suffix == ".json" or path.exists():
        if not path.exists():
            raise UsageError(f"argument {option}: no such file {name!r}")
        try:
            from .. import models

            return models.from_hf_config(path, ignore_keys=ignore)
        except ValueError as err:
            message = one_line(err, _HF_KEYS)
            prefix = "" if message.startswith(str(path)) else f"{path}: "
            raise UsageError(f"argument {option}: {prefix}{message}") from None
    _check_model_name(name)  # answered without loading the library
    from .. import models

    return models.get(name)


def hardware_names() -> tuple[list[str], dict[str, str]]:
    """The chip presets' names and their aliases, read from ``hardware/presets`` (its
    ``index.json`` and each preset's ``name``; no SymPy: a test keeps them equal to
    :func:`symcost.hardware.names`)."""
    folder = Path(__file__).resolve().parent.parent / "hardware" / "presets"
    index = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    names = [json.loads((folder / f"{file}.json").read_text(encoding="utf-8"))["name"] for file in index["presets"]]
    return names, dict(index["aliases"])


def known_chip(name: str) -> bool:
    """Whether :func:`symcost.hardware.get` knows ``name``: the same lookup
    (:func:`symcost.core.names.lookup`) over the presets' names and aliases read from their files."""
    names, aliases = hardware_names()
    return lookup(name, keyed(names), aliases) is not None


def _check_chip_name(name: str, option: str = "--hardware") -> None:
    if Path(name).suffix.lower() not in (".json", ".yaml", ".yml") and not known_chip(name):
        raise UsageError(f"argument {option}: unknown chip {name!r} (choose from {', '.join(hardware_names()[0])}, "
                         "or a .json/.yaml file)")


def hardware_arg(name: str, engine: str | None = None, option: str = "--hardware") -> Hardware:
    """The chip ``option`` (``--hardware``) names, under the ``--engine`` profile when one is given."""
    _check_chip_name(name, option)  # answered without loading the library
    path = Path(name)
    from .. import hardware

    if path.suffix.lower() in (".json", ".yaml", ".yml"):
        try:
            chip = hardware.load_file(path)
        except ValueError as err:  # ValidationError included
            raise UsageError(f"argument {option}: {one_line(err)}") from None
    else:
        if not hardware.is_known(name):
            raise UsageError(f"argument {option}: unknown chip {name!r} (choose from {', '.join(hardware.names())}, "
                             "or a .json/.yaml file)")
        try:
            # a known chip whose preset file is broken says so (presets are read on first use)
            chip = hardware.get(name)
        except ValueError as err:  # HardwareError, ValidationError
            raise UsageError(f"argument {option}: {one_line(err)}") from None
    if engine is None:
        return chip
    if engine.lower() not in hardware.runtimes():
        raise UsageError(f"argument --engine: unknown engine profile {engine!r} (choose from "
                         f"{', '.join(hardware.runtimes())})")
    return chip.with_runtime(engine)


def add_engine(p: argparse.ArgumentParser) -> None:
    """``--engine``: the engine profile the chip runs under (symcost/hardware/engines)."""
    p.add_argument("--engine", default=None,
                   help="engine profile: neutral (default), tensorrt-llm, vllm, sglang, tensorrt-llm-0.x, "
                        "fastertransformer")


def parallelism_arg(args: argparse.Namespace) -> dict[str, Any]:
    seq: Any = args.sp
    if isinstance(seq, str):
        seq = "tp" if seq == "tp" else int(seq)
    return {"tensor_parallel": args.tp, "pipeline_parallel": args.pp, "data_parallel": args.dp,
            "sequence_parallel": seq, "expert_parallel": args.ep, "context_parallel": args.cp,
            "cp_comm_type": args.cp_comm}


def check_out(path: str, option: str, plot: bool = False) -> Path:
    """An output path that can be written: its folder exists (and for a chart, a known suffix)."""
    out = Path(path)
    if plot:
        from ..report.plots import FORMATS

        if out.suffix.lower().lstrip(".") not in FORMATS:
            raise UsageError(f"argument {option}: cannot write {path!r}: the suffix must be "
                             f"{' or '.join('.' + f for f in FORMATS)}")
    folder = out.parent
    if not folder.is_dir():
        raise UsageError(f"argument {option}: cannot write {path!r}: no such folder {str(folder)!r}")
    return out


def guarded_write(action: Callable[[], Any], option: str, path: str) -> Any:
    """Run a write; an OS error (permissions, a full disk) becomes one line naming the option."""
    try:
        return action()
    except OSError as err:
        raise UsageError(f"argument {option}: cannot write {path!r}: {err.strerror or err}") from None
    except ImportError as err:
        raise UsageError(f"argument {option}: {err}") from None


def _integer(text: str, least: int, words: str) -> int:
    """``text`` as an integer of at least ``least`` (``words`` names the rule in the one-line error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {words}, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"expected {words}, got {value}")
    return value


def positive(text: str) -> int:
    return _integer(text, 1, "a positive integer")


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def non_negative(text: str) -> int:
    """A whole number of at least 0."""
    return _integer(text, 0, "an integer >= 0")


def positive_number(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A fraction in [0, 1)."""
    value = _number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}")
    return value


def unit_fraction(text: str) -> float:
    """A fraction in (0, 1]."""
    value = _number(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {text!r}")
    return value


def seq_degree(text: str) -> Any:
    return "tp" if text == "tp" else positive(text)


def window_value(text: str) -> Any:
    """``--window``: a positive number of tokens, or ``w`` (the window symbol, for formulas)."""
    return "w" if text == "w" else positive(text)


def add_model_options(p: argparse.ArgumentParser, symbolic: bool = False) -> None:
    """``--window`` and ``--global-every`` (hybrid local/global attention, Gemma 2's pattern) and
    ``--kv-dtype`` (the KV cache's own format); ``symbolic``: ``--window w`` keeps the window a
    symbol (for formulas)."""
    note = " ('w': the symbol)" if symbolic else ""
    p.add_argument("--window", type=window_value if symbolic else positive, default=None, metavar="W",
                   help=f"sliding window of W tokens on every attention layer{note}")
    p.add_argument("--global-every", type=positive, default=None, metavar="K",
                   help="with --window: every K-th layer keeps full attention (layer i is global "
                        "when K divides i + 1; Gemma 2: K = 2)")
    p.add_argument("--kv-dtype", choices=DTYPES, default=None,
                   help="the KV cache's own format (default: --dtype)")
    p.add_argument("--ignore-hf-keys", type=key_list, default=None, metavar="KEYS",
                   help="comma-separated config.json keys to take as cost-free (a --model file's keys "
                        "symcost does not know)")


def key_list(text: str) -> list[str]:
    """``a,b`` -> ``["a", "b"]`` (config.json key names)."""
    keys = [k.strip() for k in text.split(",") if k.strip()]
    if not keys:
        raise argparse.ArgumentTypeError("expected comma-separated key names")
    return keys


def int_list(text: str) -> list[int]:
    return [positive(x) for x in text.split(",") if x]


def add_common(p: argparse.ArgumentParser, phase: bool = True) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"preset name or config.json (default {DEFAULT_MODEL})")
    p.add_argument("--hardware", default=DEFAULT_HARDWARE,
                   help=f"preset name or .json/.yaml (default {DEFAULT_HARDWARE})")
    add_engine(p)
    p.add_argument("--tp", type=positive, default=1, help="tensor-parallel degree")
    p.add_argument("--pp", type=positive, default=1, help="pipeline-parallel degree")
    p.add_argument("--dp", type=positive, default=1, help="data-parallel degree")
    p.add_argument("--sp", type=seq_degree, default=1, help='Ulysses sequence degree, or "tp" for Megatron SP')
    p.add_argument("--ep", type=positive, default=1, help="expert-parallel degree")
    p.add_argument("--cp", type=positive, default=1,
                   help="context-parallel degree (Megatron CP: the sequence split over a KV ring)")
    p.add_argument("--cp-comm", choices=["p2p", "all_gather"], default="p2p",
                   help="how CP attention exchanges K and V (default p2p, a ring)")
    p.add_argument("--dtype", choices=DTYPES, default="bf16", help="data type (default bf16)")
    add_model_options(p)
    p.add_argument("--json", action="store_true", help="machine-readable JSON output")
    if phase:
        p.add_argument("--phase", choices=["prefill", "decode", "training"], default=None,
                       help="one phase (default: all three)")


# -- output helpers -------------------------------------------------------------------------------


def num(x: Any) -> Any:
    """A JSON-friendly number: ints stay exact, rationals become floats; lists, tuples and dicts
    (a chip's ``matmul_tile``, its ``runtime`` profile) are converted item by item."""
    if isinstance(x, bool) or x is None:
        return x
    if isinstance(x, dict):
        return {k: num(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [num(v) for v in x]
    if isinstance(x, str):  # to_dict writes rationals as "4/5"; a name ("neutral", "E") stays a name
        try:
            value = Fraction(x)
        except ValueError:
            return x
        return int(value) if value.denominator == 1 else float(value)
    if isinstance(x, int):
        return x
    import sympy as sp

    try:
        value = sp.sympify(x)
    except (sp.SympifyError, TypeError):
        return str(x)
    if value.is_Integer:
        return int(value)
    if value.is_number:
        return float(value)
    return str(value)


def human(x: Any, unit: str) -> str:
    """``x`` with its unit for the text output (3 significant digits, :mod:`symcost.core.units`):
    ``unit`` is ``"s"``, ``"B"`` (decimal GB), ``"FLOP"``, ``"FLOP/s"`` or ``"B/s"``; a formula is
    printed as it is."""
    from ..core import display, units

    if not display.is_numeric(x):
        return f"{x} {unit}"
    if unit == "s":
        return units.format_time(x, digits=3)
    if unit == "B":
        return units.format_bytes(x, digits=3)
    if unit == "FLOP":
        return units.format_flops(x, digits=3)
    return units.format_rate(x, unit[:-2], digits=3)  # "FLOP/s", "B/s"


def emit(args: argparse.Namespace, data: dict, lines: Sequence[str]) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2))
    else:
        print("\n".join(lines))


def par_text(par: dict[str, Any]) -> str:
    cp = par.get("context_parallel", 1)
    context = f", CP {cp} ({par.get('cp_comm_type', 'p2p')})" if cp != 1 else ""
    return (f"TP {par['tensor_parallel']}, PP {par['pipeline_parallel']}, DP {par['data_parallel']}, "
            f"SP {par['sequence_parallel']}, EP {par['expert_parallel']}{context}")


def count_text(x: Any) -> str:
    """A whole number with thousands separators (``8,192``), whether an int or a SymPy Integer;
    anything else as it prints."""
    value = num(x)
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def chunk_text(chunk: Optional[int], n: Any = None) -> str:
    if chunk is None:
        return "prefill unchunked (the whole prompt at once)"
    return f"prefill in chunks of {count_text(chunk)} tokens" + (f" ({count_text(n)} chunks)" if n is not None else "")


def fits_text(fits: Optional[bool]) -> str:
    return {True: "fits", False: "does not fit", None: "unknown (symbolic)"}[fits]
