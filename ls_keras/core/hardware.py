"""What the machine can run fast, and the precision `--precision=auto` resolves to.

The decision is a pure function of a `Hardware` description, so it is tested over faked
machines; `detect()` reads the real one once per process. Measured (float32 vs
mixed_bfloat16, the default CNN, `model.fit`, 2 cores): on CPUs with AVX512_BF16,
bfloat16 ran 1.7x (Intel) and 1.8x (AMD EPYC) faster; without it, TensorFlow emulates
bfloat16 and ran 5-12x slower (AMD EPYC, AVX2 only), and oneDNN limited below its bfloat16
ISA (ONEDNN_MAX_CPU_ISA=AVX512_CORE) ran 2x slower. So bfloat16 is chosen only where the
hardware has it natively.
"""

import dataclasses
import functools
import os
import platform
from typing import Dict, FrozenSet, List, Optional, Tuple

# The CPU flags (as /proc/cpuinfo names them) that decide precision and speed.
CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
BF16_CPU_FEATURES = ("avx512_bf16", "amx_bf16")
# ONEDNN_MAX_CPU_ISA values that still let oneDNN use its native bfloat16 kernels.
ONEDNN_BF16_ISAS = frozenset(
  {
    "ALL",
    "DEFAULT",
    "AVX512_CORE_BF16",
    "AVX512_CORE_FP16",
    "AVX512_CORE_AMX",
    "AVX512_CORE_AMX_FP16",
    "AVX10_1_512",
    "AVX10_1_512_AMX",
    "AVX10_1_512_AMX_FP16",
    "AVX10_2_512",
    "AVX10_2_512_AMX_2",
  }
)
AUTO = "auto"


@dataclasses.dataclass(frozen=True)
class Gpu:
  """One GPU: its name and CUDA compute capability (major, minor)."""

  name: str
  compute_capability: Tuple[int, int]


@dataclasses.dataclass(frozen=True)
class Hardware:
  """The facts about a machine that decide its precision.

  Attributes:
    cpu_model: the CPU's model name ('model name' in /proc/cpuinfo).
    cpu_features: which of CPU_FEATURES the CPU reports.
    gpus: the visible GPUs.
    onednn_max_isa: the value of $ONEDNN_MAX_CPU_ISA ('' when unset): a user's cap on the
      instructions oneDNN may use, which can switch its bfloat16 kernels off.
  """

  cpu_model: str
  cpu_features: FrozenSet[str] = frozenset()
  gpus: Tuple[Gpu, ...] = ()
  onednn_max_isa: str = ""
  onednn: bool = True  # False when TF_ENABLE_ONEDNN_OPTS=0: TensorFlow's own kernels emulate bf16.

  @property
  def native_cpu_bfloat16(self) -> bool:
    """Whether oneDNN can run bfloat16 natively on this CPU (AVX512_BF16 or AMX, not capped)."""
    capped = self.onednn_max_isa and self.onednn_max_isa.upper() not in ONEDNN_BF16_ISAS
    return bool(set(BF16_CPU_FEATURES) & self.cpu_features) and self.onednn and not capped

  def to_dict(self) -> Dict[str, object]:
    """A JSON-ready description (recorded in config.json's sessions)."""
    return {
      "cpu_model": self.cpu_model,
      "cpu_features": sorted(self.cpu_features),
      "gpus": [
        {"name": g.name, "compute_capability": list(g.compute_capability)} for g in self.gpus
      ],
      "onednn_max_isa": self.onednn_max_isa,
      "onednn": self.onednn,
    }

  def describe(self) -> str:
    """One line: the CPU model, its relevant features, and the GPUs."""
    features = (
      ", ".join(f.upper() for f in CPU_FEATURES if f in self.cpu_features)
      or "none of AVX2/AVX512/AMX"
    )
    gpus = (
      "; ".join(
        f"{g.name} (compute capability {g.compute_capability[0]}.{g.compute_capability[1]})"
        for g in self.gpus
      )
      or "no GPU"
    )
    cap = f"; ONEDNN_MAX_CPU_ISA={self.onednn_max_isa}" if self.onednn_max_isa else ""
    cap += "" if self.onednn else "; TF_ENABLE_ONEDNN_OPTS=0"
    return f"{self.cpu_model} [{features}]{cap}; {gpus}"


def choose_precision(hardware: Hardware) -> Tuple[str, str]:
  """The fastest Keras dtype policy the hardware runs natively, and why.

  GPUs decide when there are any (the slowest GPU, since replicas run in lockstep):
  compute capability >= 8.0 (Ampere and newer) has bfloat16 tensor cores; 7.x (Volta,
  Turing) float16 tensor cores and 6.0/6.2 (P100, TX2) fast float16 take mixed_float16;
  other GPUs float32. Without GPUs: mixed_bfloat16 on CPUs with AVX512_BF16 or AMX,
  float32 otherwise.

  Args:
    hardware: the machine, from `detect()` or built by hand.

  Returns:
    (precision, reason): one of 'mixed_bfloat16', 'mixed_float16', 'float32', and a
    sentence saying why.
  """
  if hardware.gpus:
    slowest = min(hardware.gpus, key=lambda g: g.compute_capability)
    major, minor = slowest.compute_capability
    where = f"GPU {slowest.name} (compute capability {major}.{minor})"
    if (major, minor) >= (8, 0):
      return "mixed_bfloat16", f"{where} has bfloat16 tensor cores"
    if major == 7 or (major, minor) in ((6, 0), (6, 2)):
      return "mixed_float16", f"{where} has fast float16 but no bfloat16"
    return "float32", f"{where} has neither fast float16 nor bfloat16"
  if hardware.native_cpu_bfloat16:
    present = "/".join(f.upper() for f in BF16_CPU_FEATURES if f in hardware.cpu_features)
    return (
      "mixed_bfloat16",
      f"CPU {hardware.cpu_model} has {present}: oneDNN runs bfloat16 natively",
    )
  if set(BF16_CPU_FEATURES) & hardware.cpu_features and not hardware.onednn:
    return "float32", (
      f"CPU {hardware.cpu_model} has bfloat16 instructions, but TF_ENABLE_ONEDNN_OPTS=0 switches "
      "off oneDNN, the only TensorFlow CPU kernels that use them"
    )
  if set(BF16_CPU_FEATURES) & hardware.cpu_features:
    return "float32", (
      f"CPU {hardware.cpu_model} has bfloat16 instructions, but ONEDNN_MAX_CPU_ISA="
      f"{hardware.onednn_max_isa} keeps oneDNN from using them"
    )
  return (
    "float32",
    f"CPU {hardware.cpu_model} has neither AVX512_BF16 nor AMX: bfloat16 would be emulated, 5-12x "
    "slower",
  )


def native_precisions(hardware: Hardware) -> List[Tuple[str, Optional[str]]]:
  """Every Keras precision with None where the hardware runs it natively, else why not.

  float32 always runs; mixed_bfloat16 on GPUs of compute capability >= 8.0 and CPUs whose
  oneDNN uses AVX512_BF16/AMX; mixed_float16 on GPUs with fast float16 (never on CPUs).
  """
  capabilities = [g.compute_capability for g in hardware.gpus]
  if capabilities:
    bf16 = all(c >= (8, 0) for c in capabilities)
    fp16 = all(c[0] >= 7 or c in ((6, 0), (6, 2)) for c in capabilities)
    return [
      ("float32", None),
      (
        "mixed_bfloat16",
        None if bf16 else "a GPU older than compute capability 8.0 has no bfloat16",
      ),
      (
        "mixed_float16",
        None if fp16 else "a GPU without fast float16 (compute capability 6.1, 5.x)",
      ),
    ]
  return [
    ("float32", None),
    (
      "mixed_bfloat16",
      None
      if hardware.native_cpu_bfloat16
      else "this CPU has no AVX512_BF16/AMX (or oneDNN is capped below it): bfloat16 is emulated, "
      "measured 5-12x slower than float32",
    ),
    ("mixed_float16", "no GPU: float16 runs emulated on CPUs"),
  ]


def read_cpu(cpuinfo_path: str = "/proc/cpuinfo") -> Tuple[str, FrozenSet[str]]:
  """(model name, the CPU_FEATURES present) from /proc/cpuinfo; elsewhere the platform's name."""
  model, flags = "", set()
  try:
    with open(cpuinfo_path) as f:
      for line in f:
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
          model = value.strip()
        elif key == "flags" and not flags:
          flags = set(value.split())
        if model and flags:
          break
  except OSError:
    pass
  return model or platform.processor() or platform.machine() or "unknown CPU", frozenset(
    flags & set(CPU_FEATURES)
  )


def _gpus() -> Tuple[Gpu, ...]:
  import tensorflow as tf  # Only here: the pure decision above needs no TensorFlow.

  found = []
  for device in tf.config.list_physical_devices("GPU"):
    details = tf.config.experimental.get_device_details(device)
    found.append(
      Gpu(details.get("device_name", device.name), tuple(details.get("compute_capability", (0, 0))))
    )
  return tuple(found)


@functools.lru_cache(maxsize=None)
def detect() -> Hardware:
  """This machine, read once per process (CPU from /proc/cpuinfo, GPUs from TensorFlow)."""
  model, features = read_cpu()
  onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").strip().lower() not in ("0", "false")
  return Hardware(model, features, _gpus(), os.environ.get("ONEDNN_MAX_CPU_ISA", ""), onednn)


def resolve_precision(precision: str, hardware: Hardware = None) -> Tuple[str, str]:
  """`precision` itself when explicit; for 'auto', `choose_precision` of this machine."""
  if precision != AUTO:
    return precision, "set explicitly"
  return choose_precision(hardware or detect())
