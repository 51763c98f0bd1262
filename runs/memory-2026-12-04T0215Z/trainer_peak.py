"Peak memory of the train stage on rows that all fill max_length (a local alpaca file in the real schema), 3 steps: python trainer_peak.py RECIPE BATCH MAX_LENGTH"
import os, sys, json, tempfile
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from pathlib import Path
from sft_demos.params import load_params
from sft_demos.taskworld import task_rows
from sft_demos.data import run_data
from sft_demos.train import run_train
from sft_demos.preflight import memory_plan, model_config
recipe, B, L = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
work = Path(tempfile.mkdtemp(prefix="mem-"))
words = " ".join(m["content"] for r in task_rows("train", 0) for m in r["messages"]).split()
from sft_demos.model import load_tokenizer
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
f = work / "long.jsonl"
f.write_text("".join(json.dumps(r) + "\n" for r in rows))
over = {"datasets": [{"path": str(f), "schema": "alpaca"}], "per_device_train_batch_size": B, "max_length": L,
        "max_steps": 3, "eval_steps": 1000, "save_steps": 1000, "eval_split_size": 0.1}
p = load_params(recipe, overrides=over)
run_data(p, work, log=lambda *a: None)
s = run_train(p, work)
m = memory_plan(model_config(p), p, "cpu")
print(json.dumps({"recipe": recipe, "B": B, "L": L, "train_tokens_per_step": s["train_tokens"] / s["global_step"],
                  "peak_rss_mb": s["peak_rss_mb"], "plan_mb": round(m["total"] / 2**20),
                  "plan_terms_mb": {k: round(v / 2**20) for k, v in m["terms"].items()}}))
