"""The record's tables from memory.json and the memory plan: python summary.py > README.md's tables (printed)."""
import json, sys
from pathlib import Path
from sft_demos.params import load_params
from sft_demos.preflight import memory_plan, model_config, param_counts
from sft_demos.util import md_table

HERE = Path(__file__).resolve().parent
rec = json.loads((HERE / "memory.json").read_text())
ms = rec["measurements"]
HEAD_MB = {(h["tokens"], h["tile_tokens"]): h["transient_mb"] for h in rec["head"]}


def live_mb(m: dict) -> float:
    "What the run's tensors need at the peak, as measured: saved for backward, weights, LoRA + AdamW, the head's tiles."
    n = m["B"] * (m["L"] - 1)
    head = HEAD_MB.get((n, m["head_tokens"]), 8.3 * min(n, m["head_tokens"]) * 32768 * 4 / 2**20)
    if m["recipe"] != "smollm2-135m": head = 8.3 * min(n, m["head_tokens"]) * 2000 * 4 / 2**20
    return m["saved_for_backward_mb"] + m["weights_mb"] + m["lora_and_optimizer_mb"] + head


def plan_mb(m: dict) -> tuple[float, dict]:
    q = load_params(m["recipe"], [f"per_device_train_batch_size={m['B']}", f"max_length={m['L']}",
                                  f"gradient_checkpointing={str(m['gradient_checkpointing']).lower()}"])
    p = memory_plan(model_config(q), q, "cpu")
    return p["total"] / 2**20, {k: round(v / 2**20) for k, v in p["terms"].items()}


def levers() -> str:
    base = next(m for m in ms if m["group"] == "baseline")
    rows = []
    for m in ms:
        if m["recipe"] != "smollm2-135m" or m["B"] != 11: continue
        timed = m["group"] != "malloc-stats"
        rows.append({"configuration": m["name"], "checkpointing": m["gradient_checkpointing"],
                     "peak RSS GiB": round(m["peak_rss_mb"] / 1024, 2),
                     "vs baseline": round(m["peak_rss_mb"] / base["peak_rss_mb"], 2),
                     "live tensors GiB": round(live_mb(m) / 1024, 2),
                     "peak / live": round(m["peak_rss_mb"] / live_mb(m), 2),
                     "step s": m["step_s_median"] if timed else None,
                     "step vs baseline": round(m["step_s_median"] / base["step_s_median"], 2) if timed else None,
                     "load (1 min) before, after": m["load_avg_1min"]})
    return md_table(rows, align="llrrrrrrl")


def heads() -> str:
    return md_table([{"tokens": h["tokens"], "tile tokens": h["tile_tokens"], "tile MB": h["tile_mb"],
                      "transient MB": h["transient_mb"], "tiles": h["tiles"], "forward + backward s": h["seconds"]}
                     for h in rec["head"]], align="rrrrrr")


def plan_rows() -> str:
    rows = []
    for m in ms:
        if m["group"] not in ("plan", "together"): continue
        p, terms = plan_mb(m)
        rows.append({"recipe": m["recipe"], "batch x length": f"{m['B']} x {m['L']}",
                     "checkpointing": m["gradient_checkpointing"], "measured MB": round(m["peak_rss_mb"]),
                     "planned MB": round(p), "planned / measured": round(p / m["peak_rss_mb"], 3),
                     "saved for backward MB (plan)": f"{m['saved_for_backward_mb']:,.0f} ({terms['activations']:,})",
                     "tokens/s": m["tokens_per_s"], "load": m["load_avg_1min"]})
    return md_table(rows, align="lllrrrrrl")


def fits(budgets=(8, 16), lengths=(192, 512, 1024, 2048)) -> str:
    "The largest batch the plan fits in each budget (GiB), SmolLM2-135M, with and without checkpointing."
    from dataclasses import replace
    q0 = load_params("smollm2-135m")
    cfg = model_config(q0)
    c = param_counts(cfg, q0)
    rows = []
    for L in lengths:
        for gc in (False, True):
            row = {"max_length": L, "checkpointing": gc}
            for g in budgets:
                fit = lambda b: memory_plan(cfg, replace(q0, max_length=L, gradient_checkpointing=gc,
                                                         per_device_train_batch_size=b), "cpu", c)["total"] <= g * 2**30
                lo, hi = 0, 4096  # the largest b that fits, by bisection
                while lo < hi:
                    mid = (lo + hi + 1) // 2
                    lo, hi = (mid, hi) if fit(mid) else (lo, mid - 1)
                row[f"largest batch in {g} GiB"] = lo
            rows.append(row)
    return md_table(rows, align="llrr")


if __name__ == "__main__":
    for name, f in [("levers", levers), ("heads", heads), ("plan", plan_rows), ("fits", fits)]:
        if name in sys.argv[1:] or len(sys.argv) == 1: print(f"\n### {name}\n\n{f()}")
