"""The checks of benchmarks/gpu_check.sh (which installs the project first): what a GPU is asked the moment one is
at hand. Writes ``gpu-check.json`` and ``gpu-check.md`` under ``--out``.

    python benchmarks/gpu_check.py --device cuda [--out DIR]          # the real check, ≤ 8 minutes on one H100
    python benchmarks/gpu_check.py --device cpu --tiny [--out DIR]    # a dry run at a tiny size (the tests run it)

Checks, each timed, each a row of the table (a failing check is recorded and the next one still runs):
  1. train reverse G(2,5) N=50 on the device to ≥ 0.99 held-out greedy accuracy (``ntp-probe train``, a subprocess)
  2. steps/s and tokens/s at 2L×128 and 6L×384, batch 256, bf16, eager and ``--compile`` (the engine's own loop)
  3. the 20,000-graph eval of the model of 1 (greedy + teacher-forced), on the device
  4. CPU vs device: the same seed, the same first batch: first-step loss and logits within bf16 tolerance; and the
     loss ``train --steps 1`` reports on each
  5. a one-process ``torchrun`` run of ``ntp-probe train``
  6. ``ntp-probe patch --count 500`` on the model of 1 (the CLI, on the CPU) and the same patching on the device
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import flops_train_step, time_train_steps  # noqa: E402

# sizes: (real, tiny)
SIZES = {
    "reverse": ({"layers": 2, "d_model": 128, "heads": 4, "batch": 256, "steps": 3000, "eval_every": 100,
                 "eval_count": 1000, "target": 0.99},
                {"layers": 1, "d_model": 32, "heads": 2, "batch": 32, "steps": 4, "eval_every": 2, "eval_count": 50,
                 "target": 0.99}),
    "throughput": ([(2, 128, 4, 256), (6, 384, 6, 256)], [(1, 32, 2, 16)]),
    "eval_count": (20_000, 200),
    "patch_count": (500, 5),
    "timed_steps": ((25, 100), (2, 4)),  # (warm-up, timed): multiples of the loop's loss-read interval on CUDA
}
SEQ = 31  # G(2,5) N=50: tokens a sequence (questions and answer)


def pick(key, tiny):
    return SIZES[key][1 if tiny else 0]


def ntp(*args, timeout=600, env=None):
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "ntp_probe", *args], capture_output=True, text=True, timeout=timeout,
                       env=env)
    return time.perf_counter() - t, p


def check_reverse(a, work):
    s = pick("reverse", a.tiny)
    out = work / "reverse"
    wall, p = ntp("train", "--out", str(out), "--objective", "reverse", "-d", "2", "-l", "5", "-n", "50",
                  "--layers", str(s["layers"]), "--d-model", str(s["d_model"]), "--heads", str(s["heads"]),
                  "--batch-size", str(s["batch"]), "--steps", str(s["steps"]), "--eval-every", str(s["eval_every"]),
                  "--eval-count", str(s["eval_count"]), "--target-accuracy", str(s["target"]), "--device", a.device,
                  "--threads", str(a.threads), "-q")
    if p.returncode:
        raise RuntimeError(f"train exited {p.returncode}: {p.stderr.strip()[-500:]}")
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    last = lines[-1]
    ok = last["accuracy"] >= s["target"]
    return {"ok": ok or a.tiny, "accuracy": last["accuracy"], "step": last["step"], "train_wall_s": last["wall_time_s"],
            "process_wall_s": round(wall, 2), "model": str(out),
            "note": "tiny: accuracy not required" if a.tiny and not ok else ""}


def timed_loop(layers, d_model, heads, batch, device, compile_, warm, timed, threads):
    """(s/step, seconds to the first step) of the engine's loop at this size, bf16."""
    from ntp_probe.train import TrainConfig

    cfg = TrainConfig(degree=2, path_len=5, nodes=50, layers=layers, d_model=d_model, heads=heads, batch_size=batch,
                      steps=warm + timed, eval_every=warm + timed, eval_count=100, device=device, compile=compile_,
                      amp="bf16")
    return time_train_steps(cfg, warm)


def check_throughput(a, work):
    warm, timed = pick("timed_steps", a.tiny)
    rows = []
    for layers, d_model, heads, batch in pick("throughput", a.tiny):
        for comp in (False, True):
            if comp and a.tiny and not os.environ.get("GPU_CHECK_COMPILE"):
                rows.append({"model": f"{layers}L×{d_model}", "batch": batch, "compile": True, "skipped": "tiny dry run "
                             "(compiling takes minutes on a loaded CPU; GPU_CHECK_COMPILE=1 to include it)"})
                continue
            per, first = timed_loop(layers, d_model, heads, batch, a.device, comp, warm, timed, a.threads)
            flops = flops_train_step(layers, d_model, batch, SEQ)
            rows.append({"model": f"{layers}L×{d_model}", "batch": batch, "compile": comp, "s_per_step": per,
                         "steps_per_s": 1 / per, "tokens_per_s": batch * SEQ / per, "tflops": flops / per / 1e12,
                         "first_step_s": first})
    return {"ok": True, "rows": rows}


def check_eval(a, work, model):
    from ntp_probe import checkpoint as ckpt
    from ntp_probe.evaluate import evaluate
    from ntp_probe.task import generate

    lm = ckpt.load(model, a.device)
    graphs = generate(2, 5, 50, pick("eval_count", a.tiny), seed=12345)
    evaluate(lm, graphs[:100])  # warm-up (kernels, allocator)
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    m = evaluate(lm, graphs)
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()
    return {"ok": True, "graphs": len(graphs), "seconds": time.perf_counter() - t, "accuracy": m["accuracy"],
            "forced_accuracy": m["forced_accuracy"]}


def check_cpu_vs_device(a, work):
    """The same seed on the CPU (fp32) and on the device (bf16 autocast): the same first batch, the same initial
    weights; first-step loss and logits must agree within bf16 tolerance."""
    from ntp_probe import checkpoint as ckpt
    from ntp_probe.train import DataStream, TrainConfig, autocast_ctx, make_objective, model_config

    size = dict(layers=1, d_model=32, heads=2, batch_size=16) if a.tiny else dict(layers=2, d_model=128, heads=4,
                                                                                  batch_size=64)
    cfg = TrainConfig(degree=2, path_len=5, nodes=50, seed=7, **size)
    obj = make_objective(cfg)
    dev = torch.device(a.device)
    res = {}
    for name, device, amp in (("cpu_fp32", torch.device("cpu"), "fp32"), ("device_bf16", dev, "bf16")):
        x, y = DataStream(cfg, device).batch(0)
        torch.manual_seed(cfg.seed)
        model = ckpt.build_model(model_config(cfg, obj)).to(device)
        with torch.no_grad(), autocast_ctx(device, amp):
            logits = obj.train_logits(model, x)
        res[name] = (x.cpu(), logits.float().cpu(), float(obj.loss(logits.float(), y)))
    same_batch = torch.equal(res["cpu_fp32"][0], res["device_bf16"][0])
    diff = (res["cpu_fp32"][1] - res["device_bf16"][1]).abs()
    scale = res["cpu_fp32"][1].abs().max().item()
    loss_cpu, loss_dev = res["cpu_fp32"][2], res["device_bf16"][2]
    # bf16 keeps 8 bits of mantissa (~0.4 % relative); two layers of matmuls in it: allow 2 % of the logits' range
    logits_ok = diff.max().item() <= 0.02 * max(scale, 1.0)
    loss_ok = abs(loss_cpu - loss_dev) <= 0.01 * abs(loss_cpu)
    # and through the CLI: the loss train reports after step 1 on each device
    losses = {}
    for name, device in (("cpu", "cpu"), ("device", a.device)):
        out = work / f"first-step-{name}"
        _, p = ntp("train", "--out", str(out), "--steps", "1", "--eval-every", "1", "--eval-count", "20", "--seed", "7",
                   "--layers", str(cfg.layers), "--d-model", str(cfg.d_model), "--heads", str(cfg.heads),
                   "--batch-size", str(cfg.batch_size),
                   "--device", device, "--amp", "fp32" if name == "cpu" else "bf16", "--warmup", "1", "--threads",
                   str(a.threads), "-q")
        if p.returncode:
            raise RuntimeError(f"train --steps 1 on {device} exited {p.returncode}: {p.stderr.strip()[-300:]}")
        losses[name] = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["loss"]
    cli_ok = abs(losses["cpu"] - losses["device"]) <= 0.01 * abs(losses["cpu"])
    return {"ok": same_batch and logits_ok and loss_ok and cli_ok, "same_batch": same_batch,
            "max_abs_logit_diff": diff.max().item(), "logit_scale": scale, "loss_cpu_fp32": loss_cpu,
            "loss_device_bf16": loss_dev, "train_step1_loss_cpu": losses["cpu"], "train_step1_loss_device": losses["device"]}


def check_torchrun(a, work):
    out = work / "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    t = time.perf_counter()
    size = ["--layers", "1", "--d-model", "32", "--heads", "2", "--batch-size", "16"] if a.tiny else []
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1", "-m",
                        "ntp_probe", "train", "--out", str(out), "--steps", "20", "--eval-every", "10", "--eval-count",
                        "100", "--device", a.device, *size, "-q"], capture_output=True, text=True, timeout=300, env=env)
    wall = time.perf_counter() - t
    if p.returncode:
        raise RuntimeError(f"torchrun exited {p.returncode}: {(p.stderr or p.stdout).strip()[-500:]}")
    rec = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    return {"ok": rec["step"] == 20, "step": rec["step"], "wall_s": round(wall, 2)}


def check_patch(a, work, model):
    from ntp_probe import checkpoint as ckpt
    from ntp_probe.probing.patching import patch
    from ntp_probe.task import generate

    n = pick("patch_count", a.tiny)
    wall, p = ntp("patch", model, "--count", str(n), "--json", "--threads", str(a.threads))
    if p.returncode:
        raise RuntimeError(f"patch exited {p.returncode}: {p.stderr.strip()[-300:]}")
    json.loads(p.stdout)
    lm = ckpt.load(model, a.device)
    graphs = list(generate(2, 5, 50, n, seed=0).graphs())
    t = time.perf_counter()
    patch(lm, graphs, "goal", None, None, edges=False, attribute=False, seed=0)
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()
    return {"ok": True, "count": n, "cli_cpu_process_s": round(wall, 2), "engine_on_device_s": time.perf_counter() - t}


def describe(a) -> dict:
    d = {"device": a.device, "tiny": a.tiny, "torch": torch.__version__, "python": platform.python_version(),
         "cpu": platform.processor() or platform.machine(), "threads": a.threads}
    if a.device.startswith("cuda") and torch.cuda.is_available():
        d["gpu"] = torch.cuda.get_device_name()
        d["cuda"] = torch.version.cuda
    return d


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"# gpu_check: {m.get('gpu', m['device'])}{' (tiny dry run)' if m['tiny'] else ''}", "",
             f"torch {m['torch']}, CUDA {m.get('cuda', '—')}, Python {m['python']}; total {report['total_s']:.0f} s", "",
             "| check | ok | figures | seconds |", "|---|---|---|---|"]
    for name, c in report["checks"].items():
        if "error" in c:
            figs = "error: " + c["error"].splitlines()[-1][:200]
        elif name == "throughput_bf16":
            figs = "<br>".join(
                f"{r['model']} b{r['batch']} {'compile' if r['compile'] else 'eager'}: " +
                (f"skipped ({r['skipped']})" if "skipped" in r else
                 f"{r['steps_per_s']:.1f} steps/s, {r['tokens_per_s']:,.0f} tokens/s, {r['tflops']:.2f} TFLOP/s")
                for r in c["rows"])
        else:
            figs = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in c.items()
                             if k not in ("ok", "seconds", "model", "note") and v != "")
        lines.append(f"| {name} | {'yes' if c.get('ok') else '**no**'} | {figs} | {c.get('seconds', 0):.1f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default=os.environ.get("GPU_CHECK_DEVICE", "cuda"))
    ap.add_argument("--tiny", action="store_true", default=os.environ.get("GPU_CHECK_TINY", "") not in ("", "0"))
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu-check-out")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("GPU_CHECK_THREADS", "0")) or None)
    a = ap.parse_args()
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda: torch sees no CUDA device (use --device cpu --tiny for a dry run)", file=sys.stderr)
        return 2
    a.threads = a.threads or torch.get_num_threads()
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"machine": describe(a), "checks": {}}
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        model = None

        def run(name, fn, *args):
            t = time.perf_counter()
            try:
                r = fn(a, work, *args)
            except Exception as e:  # noqa: BLE001 - a failed check is a row of the report, the others still run
                r = {"ok": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}
            r["seconds"] = time.perf_counter() - t
            report["checks"][name] = r
            print(f"{name}: {'ok' if r.get('ok') else 'FAILED'} ({r['seconds']:.1f} s)"
                  + (f" {r['error']}" if "error" in r else ""), flush=True)
            return r

        rev = run("train_reverse_g2_5", check_reverse)
        model = rev.get("model")
        run("throughput_bf16", check_throughput)
        if model:
            run("eval_20000", check_eval, model)
        run("cpu_vs_device", check_cpu_vs_device)
        run("torchrun_1_process", check_torchrun)
        if model:
            run("patch_500", check_patch, model)
    report["total_s"] = time.perf_counter() - t_all
    report["ok"] = all(c.get("ok") for c in report["checks"].values())
    (out / "gpu-check.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "gpu-check.md").write_text(markdown(report))
    print(markdown(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
