"""`--precision=auto`: a pure decision over faked machines, and the real one read once."""

import pytest

from ls_keras.core import hardware
from ls_keras.core.hardware import Gpu, Hardware

AVX2 = frozenset({"avx2"})
AVX512 = frozenset({"avx2", "avx512f"})
AVX512_BF16 = frozenset({"avx2", "avx512f", "avx512_bf16"})
AMX = frozenset({"avx2", "avx512f", "amx_bf16", "amx_tile"})


@pytest.mark.parametrize(
  "machine, precision",
  [
    (Hardware("AMD EPYC 7B13", AVX2), "float32"),
    (Hardware("Intel Xeon Gold 6148", AVX512), "float32"),  # Skylake: AVX512 but no bfloat16.
    (Hardware("Intel Xeon Platinum 8380H", AVX512_BF16), "mixed_bfloat16"),  # Cooper Lake.
    (Hardware("AMD EPYC 9B14", AVX512_BF16), "mixed_bfloat16"),  # Zen 4.
    (Hardware("Intel Xeon Platinum 8480+", AMX), "mixed_bfloat16"),  # Sapphire Rapids.
    (Hardware("Intel Xeon Platinum 8380H", AVX512_BF16, onednn_max_isa="AVX512_CORE"), "float32"),
    (
      Hardware("Intel Xeon Platinum 8480+", AMX, onednn_max_isa="avx512_core_amx"),
      "mixed_bfloat16",
    ),
    (Hardware("unknown", frozenset()), "float32"),
    (Hardware("AMD EPYC 9B14", AVX512_BF16, onednn=False), "float32"),  # TF_ENABLE_ONEDNN_OPTS=0.
  ],
)
def test_cpus_get_bfloat16_only_where_they_run_it_natively(machine, precision):
  chosen, reason = hardware.choose_precision(machine)
  assert chosen == precision
  assert machine.cpu_model in reason


@pytest.mark.parametrize(
  "capability, precision",
  [
    ((3, 7), "float32"),  # Kepler K80.
    ((5, 2), "float32"),  # Maxwell.
    ((6, 0), "mixed_float16"),  # Pascal P100: fast float16.
    ((6, 1), "float32"),  # Pascal GTX 10x0: float16 at 1/64 rate.
    ((7, 0), "mixed_float16"),  # Volta V100.
    ((7, 5), "mixed_float16"),  # Turing T4.
    ((8, 0), "mixed_bfloat16"),  # Ampere A100.
    ((8, 6), "mixed_bfloat16"),
    ((9, 0), "mixed_bfloat16"),  # Hopper H100/H200.
  ],
)
def test_each_gpu_generation(capability, precision):
  machine = Hardware("AMD EPYC 7B13", AVX2, (Gpu("NVIDIA X", capability),))
  chosen, reason = hardware.choose_precision(machine)
  assert chosen == precision and "NVIDIA X" in reason


def test_gpus_decide_over_the_cpu_and_the_slowest_gpu_decides():
  mixed = Hardware("Intel Xeon Platinum 8480+", AMX, (Gpu("A100", (8, 0)), Gpu("T4", (7, 5))))
  assert hardware.choose_precision(mixed) == (
    "mixed_float16",
    "GPU T4 (compute capability 7.5) has fast float16 but no bfloat16",
  )
  old_gpu_new_cpu = Hardware("Intel Xeon Platinum 8480+", AMX, (Gpu("K80", (3, 7)),))
  assert hardware.choose_precision(old_gpu_new_cpu)[0] == "float32"


def test_an_explicit_precision_wins():
  assert hardware.resolve_precision("mixed_bfloat16", Hardware("old", AVX2)) == (
    "mixed_bfloat16",
    "set explicitly",
  )
  assert hardware.resolve_precision("auto", Hardware("old", AVX2))[0] == "float32"


def test_cpuinfo_is_read_for_model_and_features(tmp_path):
  path = tmp_path / "cpuinfo"
  path.write_text(
    "processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 "
    "vaes\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 9B14\n"
  )
  assert hardware.read_cpu(str(path)) == (
    "AMD EPYC 9B14",
    frozenset({"avx2", "avx512f", "avx512_bf16"}),
  )
  model, features = hardware.read_cpu(str(tmp_path / "missing"))
  assert model and features == frozenset()


def test_onednn_switched_off_by_the_environment_means_no_native_bfloat16(monkeypatch):
  monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
  hardware.detect.cache_clear()
  try:
    machine = hardware.detect()
    assert not machine.onednn and not machine.native_cpu_bfloat16
    assert machine.gpus or hardware.choose_precision(machine)[0] == "float32"
    assert "TF_ENABLE_ONEDNN_OPTS=0" in machine.describe()
  finally:
    hardware.detect.cache_clear()


def test_this_machine_is_read_once_and_described():
  assert hardware.detect() is hardware.detect()
  line = hardware.detect().describe()
  assert hardware.detect().cpu_model in line and ("GPU" in line or "no GPU" in line)
