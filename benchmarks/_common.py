"""Shared helpers for the benchmark scripts: machine description and a plain table printer."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time

import torch


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} cores{gpu}; torch {torch.__version__}, {torch.get_num_threads()} threads"


def table(title: str, header: list[str], rows: list[list]) -> str:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [f"## {title}", "", "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for r in cells[1:]:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
    return "\n".join(lines) + "\n"


def timeit(fn, repeat: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def median(xs):
    return statistics.median(xs)


def run(cmd: list[str], **kw) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    return time.perf_counter() - t, p


# ------------------------------------------------------------------------------------------------
# FLOP counts and the machine's own matmul peak: figures that travel between machines are fractions of it.


def cpu_flags() -> set[str]:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def native_bf16() -> bool:
    """The CPU computes bf16 itself (x86 avx512_bf16 or AMX); elsewhere torch emulates it, far below fp32."""
    f = cpu_flags()
    return bool({"avx512_bf16", "amx_bf16"} & f)


def simd_flags() -> str:
    f = cpu_flags()
    keep = ["avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile"]
    return " ".join(k for k in keep if k in f) or "(none of avx2/avx512/amx)"


def gpt_params(layers: int, d_model: int, vocab: int = 54, block: int = 31, heads: int = 4, future: int = 1) -> int:
    """Parameters of ntp-probe's GPT without the position table (``GPT.num_params``), counted on the meta device."""
    from ntp_probe.model import GPT, GPTConfig

    with torch.device("meta"):
        return GPT(GPTConfig(vocab_size=vocab, block_size=block, n_layer=layers, n_head=heads, n_embd=d_model,
                             n_future=future)).num_params()


def flops_forward(layers: int, d_model: int, tokens: int, ctx: float, params: int | None = None) -> float:
    """Forward FLOPs of ``tokens`` tokens, each attending to ``ctx`` keys on average: 2·params·tokens for the weight
    matmuls plus attention's QKᵀ and AV, 4·layers·d_model·ctx a token."""
    params = gpt_params(layers, d_model) if params is None else params
    return tokens * (2 * params + 4 * layers * d_model * ctx)


def flops_train_step(layers: int, d_model: int, batch: int, seq: int, params: int | None = None) -> float:
    """One training step (forward + backward = 3 forwards): 6·params·tokens + 12·layers·d_model·seq a token (PaLM's
    estimate, the causal mask's half not subtracted; ``GPT.flops_per_token``)."""
    params = gpt_params(layers, d_model) if params is None else params
    return batch * seq * (6 * params + 12 * layers * d_model * seq)


def matmul_peak(dtype: torch.dtype, threads: int, sizes: tuple[int, ...] = (512, 1024), reps: int = 6) -> float:
    """The best FLOP/s of an n×n @ n×n matmul in ``dtype`` on ``threads`` threads: this machine's own ceiling for the
    dense part of every hot path. At one thread each matmul is timed by this process's CPU seconds (on a shared,
    loaded machine the wall clock adds other processes' turns on the core); at several, by the wall clock (so a
    loaded machine gives a low all-threads figure: say its load beside it)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        best = 0.0
        for n in sizes:
            a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
            a @ b  # warm-up
            for _ in range(reps):
                w, c = time.perf_counter(), time.process_time()
                a @ b
                dt = (time.process_time() - c) if threads == 1 else (time.perf_counter() - w)
                if dt > 0:
                    best = max(best, 2 * n**3 / dt)
        return best
    finally:
        torch.set_num_threads(old)


def load_average() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def time_train_steps(cfg, warm: int) -> tuple[float, float]:
    """(s/step, seconds to the first step) of the engine's own loop (``ntp_probe.train.train``) on ``cfg``, timed
    between its step events after ``warm`` steps (on CUDA the loop reads the loss every 25 steps, a sync, so both
    ends are synced when they are multiples of it)."""
    import tempfile
    import time

    from ntp_probe.train import train

    stamps: dict[int, float] = {}
    t0 = time.perf_counter()

    def cb(e):
        if e["event"] == "step":
            stamps[e["step"]] = time.perf_counter()

    with tempfile.TemporaryDirectory() as d:
        train(cfg, d, callback=cb)
    return (stamps[cfg.steps] - stamps[warm]) / (cfg.steps - warm), stamps[1] - t0
