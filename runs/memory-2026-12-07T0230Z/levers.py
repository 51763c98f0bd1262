"""Memory of the train stage on CPU, one configuration per process, on rows that all fill max_length.

  python levers.py GROUP [GROUP ...]   run the configurations of each group (CONFIGS) one after another,
                                       each in a fresh process started with its allocator's environment;
                                       results are added to memory.json beside this file
  python levers.py one RECIPE BATCH MAX_LENGTH [--steps 3] [--head-tokens N] [--keep-map] [--set key=value ...] [--malloc-stats]
                                       one measurement in this process, printed as JSON
  python levers.py head TOKENS TILE    the fused LM head's forward + backward alone: its transient memory
  python levers.py heads               the same for the (tokens, tile) pairs of HEAD

A measurement reports the process's peak resident memory (VmHWM, what the train stage records), the median
step time of the steps after the first, and the live terms: the bytes autograd saves in one training forward
(saved-tensor hooks; parameters excluded), the weights (parameter storages and 4-bit quantization states),
LoRA weights + gradients + AdamW states; with --malloc-stats also glibc's in-use bytes (mallinfo2, sampled every
5 ms: each call walks the heap's free lists under its lock, so the step times of such a run are not comparable).
"""
import argparse, ctypes, json, os, re, statistics, subprocess, sys, tempfile, threading, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MMAP = {"MALLOC_MMAP_THRESHOLD_": "131072"}
THP = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
JEMALLOC = {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}
TRL = ["--head-tokens", "4096", "--keep-map"]  # the fused head's and the loader's behaviour before this record
GC = ["--set", "gradient_checkpointing=true"]
S = ("smollm2-135m", 11, 192)
CONFIGS = {  # group -> [(name, (recipe, batch, max_length), environment, arguments)]
    "malloc-stats": [("glibc defaults, TRL's 4096-token tiles, model file mapped; glibc's in-use bytes sampled", S,
                      {}, TRL + ["--malloc-stats"])],
    "baseline": [("glibc defaults, TRL's 4096-token tiles, model file mapped", S, {}, TRL)],
    "levers": [
        ("MALLOC_MMAP_THRESHOLD_=131072", S, MMAP, TRL + ["--steps", "2"]),
        ("256-token head tiles", S, {}, ["--head-tokens", "256", "--keep-map", "--steps", "2"]),
    ],
    "together": [  # the defaults on CPU: the runner's allocator setting, 256-token tiles, the mapping released
        ("mmap threshold + 256-token tiles + mapping released", S, MMAP, ["--steps", "2"]),
        ("mmap threshold + 256-token tiles + mapping released + gradient checkpointing", S, MMAP, GC + ["--steps", "2"]),
    ],
    "plan": [  # rows that fill max_length for the plan: the embedded base and SmolLM2, two batch sizes each, and 512
        ("defaults", ("tiny-cpu", 16, 256), MMAP, ["--steps", "2"]),
        ("defaults", ("tiny-cpu", 64, 256), MMAP, ["--steps", "2"]),
        ("defaults", ("smollm2-135m", 4, 192), MMAP, ["--steps", "2"]),
        ("defaults", ("smollm2-135m", 4, 512), MMAP, ["--steps", "2"]),
    ],
}


def status_mb(key: str) -> float:
    return int(re.search(rf"{key}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 1024


class MallocPeak(threading.Thread):
    "Peak of glibc's in-use bytes (mallinfo2: heap chunks in use + mapped chunks), sampled."
    FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()

    def __init__(self, every: float = 0.005):
        super().__init__(daemon=True)
        class MI2(ctypes.Structure): _fields_ = [(n, ctypes.c_size_t) for n in self.FIELDS]
        self.libc = ctypes.CDLL("libc.so.6")
        self.libc.mallinfo2.restype = MI2
        self.every, self.stop, self.peak, self.heap_at_peak = every, False, 0, 0

    def run(self):
        while not self.stop:
            mi = self.libc.mallinfo2()
            if mi.uordblks + mi.hblkhd > self.peak:
                self.peak, self.heap_at_peak = mi.uordblks + mi.hblkhd, mi.arena + mi.hblkhd
            time.sleep(self.every)


def full_rows(recipe: str, B: int, L: int) -> list[dict]:
    "8 x B alpaca rows whose whole conversation (chat template included) fills max_length."
    from sft_demos.params import load_params
    from sft_demos.taskworld import task_rows
    from sft_demos.model import load_tokenizer
    words = " ".join(m["content"] for r in task_rows("train", 0) for m in r["messages"]).split()
    tok = load_tokenizer(load_params(recipe))
    def n_tokens(ins, out):
        msgs = [{"role": "user", "content": ins}, {"role": "assistant", "content": out}]
        return len(tok.apply_chat_template(msgs, tokenize=True, return_dict=False))
    rows = []
    for i in range(8 * B):
        ins, w = " ".join(words[i * 7:i * 7 + 12]), words[i * 11:i * 11 + 4 * L]
        lo, hi = 1, len(w)
        while lo < hi:  # the longest answer whose whole conversation fits in max_length
            mid = (lo + hi + 1) // 2
            if n_tokens(ins, " ".join(w[:mid])) <= L - 2: lo = mid
            else: hi = mid - 1
        rows.append({"instruction": ins, "input": "", "output": " ".join(w[:lo])})
    return rows


def storages(tensors) -> dict:
    return {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}


def weight_tensors(model):
    for q in list(model.parameters()) + list(model.buffers()):
        yield q
        qs = getattr(q, "quant_state", None)
        if qs is not None:
            yield from [qs.absmax, qs.code] + ([qs.state2.absmax, qs.state2.code] if qs.nested else [])


def one(a) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load0 = os.getloadavg()[0]
    glibc = "LD_PRELOAD" not in os.environ and a.malloc_stats
    sampler = MallocPeak()
    if glibc: sampler.start()
    import torch
    from transformers import TrainerCallback
    from sft_demos.params import load_params
    from sft_demos.data import run_data
    from sft_demos import model as M, train as T
    from sft_demos.util import machine
    work = Path(tempfile.mkdtemp(prefix="mem-"))
    f = work / "long.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in full_rows(a.recipe, a.batch, a.max_length)))
    over = {"datasets": [{"path": str(f), "schema": "alpaca"}], "per_device_train_batch_size": a.batch,
            "max_length": a.max_length, "max_steps": a.steps, "eval_steps": 1000, "save_steps": 1000,
            "eval_split_size": 0.1, "logging_steps": 1000}
    over |= {k: json.loads(v) if v[:1] in "[{tf0123456789" else v for k, v in (s.split("=", 1) for s in a.set)}
    p = load_params(a.recipe, overrides=over)
    run_data(p, work, log=lambda *x: None)
    if a.keep_map: M.release_file_mapping = lambda m: m
    if a.head_tokens: T.CPU_HEAD_TOKENS = a.head_tokens
    times, begin = [], {}

    class Timer(TrainerCallback):
        def on_train_begin(self, *x, **k): begin["rss_mb"] = status_mb("VmRSS")
        def on_step_begin(self, *x, **k): self.t = time.perf_counter()
        def on_step_end(self, *x, **k): times.append(time.perf_counter() - self.t)

    trainer = T.build_trainer(p, work, callbacks=[Timer()])
    from trl.kernels import chunked_logprob
    weights = sum(storages(weight_tensors(trainer.model)).values())
    params = set(storages(weight_tensors(trainer.model)))
    seen = {}
    def pack(t):
        try:
            s = t.untyped_storage()
            if s.data_ptr() not in params: seen[(s.data_ptr(), s.nbytes())] = s.nbytes()
        except Exception: pass
        return t
    orig = trainer.compute_loss
    def compute_loss(*x, **k):
        if seen or not trainer.model.training: return orig(*x, **k)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t): return orig(*x, **k)
    trainer.compute_loss = compute_loss
    trainer.train()
    sampler.stop = True
    opt = trainer.optimizer
    opt_state = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values()
                    if torch.is_tensor(t) and t.dim())
    lora = sum(q.numel() * q.element_size() for q in trainer.model.parameters() if q.requires_grad)
    tokens = a.batch * a.max_length
    step = statistics.median(times[1:]) if len(times) > 1 else times[0]
    mb = lambda n: round(n / 2**20, 1)
    return {"recipe": a.recipe, "B": a.batch, "L": a.max_length, "steps": a.steps,
            "gradient_checkpointing": p.gradient_checkpointing,
            "head_tokens": chunked_logprob.TOKEN_CHUNK_SIZE, "model_file_mapped": a.keep_map,
            "allocator_env": {k: v for k, v in os.environ.items()
                              if k.startswith(("MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD"))},
            "peak_rss_mb": round(status_mb("VmHWM"), 1), "rss_at_train_begin_mb": round(begin["rss_mb"], 1),
            "malloc_in_use_peak_mb": mb(sampler.peak) if glibc else None,
            "malloc_heap_at_that_peak_mb": mb(sampler.heap_at_peak) if glibc else None,
            "saved_for_backward_mb": mb(sum(seen.values())), "weights_mb": mb(weights),
            "lora_and_optimizer_mb": mb(2 * lora + opt_state),
            "step_s": [round(t, 2) for t in times], "step_s_median": round(step, 2),
            "tokens_per_step": tokens, "tokens_per_s": round(tokens / step, 1),
            "load_avg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)], "machine": machine()}


def head(n: int, tile: int, hidden: int = 576, vocab: int = 49152) -> dict:
    "Transient resident memory and time of the fused head's forward + backward over n tokens in tiles of `tile`."
    import torch
    from trl.kernels import chunked_logprob as cl
    from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE as V
    cl.TOKEN_CHUNK_SIZE = tile
    torch.manual_seed(0)
    h, w = torch.randn(n, hidden, requires_grad=True), torch.randn(vocab, hidden) * 0.02
    y = torch.randint(0, vocab, (n,))
    out = []
    for _ in range(3):
        h.grad = None
        base = status_mb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")
        t = time.perf_counter()
        lp = cl.ChunkedLogProbFunction.apply(h, w, None, y, 1.0, V, None, 1.0, ("entropy", "is_top1"))[0]
        (-lp.sum()).backward()
        out.append((time.perf_counter() - t, status_mb("VmHWM") - base))
    s, extra = min(out)[0], statistics.median(x[1] for x in out)
    tile_mb = min(n, tile) * min(V, vocab) * 4 / 2**20
    return {"tokens": n, "tile_tokens": tile, "tile_mb": round(tile_mb, 1), "transient_mb": round(extra, 1),
            "tiles": round(extra / tile_mb, 2), "seconds": round(s, 3),
            "allocator_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}}


HEAD = [(2101, t) for t in (4096, 1024, 256, 64)] + [(764, 4096), (764, 256)]  # 11 and 4 rows of 192 tokens


def run_heads():
    out = HERE / "memory.json"
    rec = json.loads(out.read_text()) if out.exists() else {"measurements": []}
    rec["head"] = []
    for n, t in HEAD:
        r = subprocess.run([sys.executable, str(Path(__file__)), "head", str(n), str(t)], capture_output=True,
                           text=True, env={**os.environ, **MMAP, "PYTHONPATH": str(HERE.parents[1])}, check=True)
        rec["head"].append(json.loads(r.stdout.strip().splitlines()[-1]))
        print(rec["head"][-1], flush=True)
    rec["head_command"] = f"MALLOC_MMAP_THRESHOLD_=131072 python {Path(__file__).relative_to(HERE.parents[1])} head TOKENS TILE"
    out.write_text(json.dumps(rec, indent=1) + "\n")


def run_group(group: str):
    if group == "heads": return run_heads()
    out = HERE / "memory.json"
    rec = json.loads(out.read_text()) if out.exists() else {"measurements": []}
    for name, (recipe, B, L), env, args in CONFIGS[group]:
        cmd = [sys.executable, str(Path(__file__)), "one", recipe, str(B), str(L), *args]
        e = {**os.environ, **env, "PYTHONPATH": str(HERE.parents[1])}
        r = subprocess.run(cmd, env=e, capture_output=True, text=True)
        if r.returncode:
            print(r.stderr[-3000:], file=sys.stderr)
            continue
        m = json.loads(r.stdout.strip().splitlines()[-1])
        m = {"group": group, "name": name, "command": " ".join(f"{k}={v}" for k, v in env.items())
             + f" python {Path(__file__).relative_to(HERE.parents[1])} one {recipe} {B} {L} {' '.join(args)}".strip(),
             **m}
        rec["measurements"].append(m)
        out.write_text(json.dumps(rec, indent=1) + "\n")
        print(f"{name:60s} peak {m['peak_rss_mb'] / 1024:5.2f} GB  step {m['step_s_median']:6.2f} s  "
              f"saved {m['saved_for_backward_mb'] / 1024:5.2f} GB  malloc peak {m['malloc_in_use_peak_mb']}  "
              f"load {m['load_avg_1min']}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "one":
        ap = argparse.ArgumentParser()
        ap.add_argument("what"); ap.add_argument("recipe"); ap.add_argument("batch", type=int)
        ap.add_argument("max_length", type=int); ap.add_argument("--steps", type=int, default=3)
        ap.add_argument("--head-tokens", type=int); ap.add_argument("--keep-map", action="store_true")
        ap.add_argument("--set", action="append", default=[]); ap.add_argument("--malloc-stats", action="store_true")
        print(json.dumps(one(ap.parse_args())))
    elif sys.argv[1] == "head":
        print(json.dumps(head(int(sys.argv[2]), int(sys.argv[3]))))
    else:
        for g in sys.argv[1:]: run_group(g)
