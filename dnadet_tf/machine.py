"""What a result was measured on, for the JSON files benchmarks and `ablate` write: the CPU's model name, its core
count, the instruction-set features that change this package's speed (native bfloat16 above all: the `cpu` preset
trains in mixed_bfloat16 where the CPU has it) and the load average, which says whether other work shared the
cores. Read from Linux's /proc/cpuinfo; elsewhere the model is `platform.processor()` and the features are empty."""
import os
import platform

# The flags of /proc/cpuinfo that tell this project's machine kinds apart (AVX2-only, AVX-512, AVX-512 BF16, AMX).
SPEED_FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")


def _cpuinfo_field(name):
    """The value of the first `name : value` line of /proc/cpuinfo, or None."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.split(":", 1)[0].strip() == name), None)
    except OSError:
        return None


def cpu_flags():
    """The set of the CPU's feature flags (/proc/cpuinfo's `flags`); empty when they cannot be read."""
    return set((_cpuinfo_field("flags") or "").split())


def describe_machine():
    """{"cpu_model", "cpus", "cpu_features" (those of SPEED_FEATURES the CPU has), "load_average_1min"}."""
    flags = cpu_flags()
    try:
        load = round(os.getloadavg()[0], 2)
    except OSError:
        load = None
    return {"cpu_model": _cpuinfo_field("model name") or platform.processor(), "cpus": os.cpu_count(),
            "cpu_features": [name for name in SPEED_FEATURES if name in flags], "load_average_1min": load}
