"Bytes autograd saves for backward in one forward of SmolLM2-135M with LoRA (nf4, float32 compute): python saved_tensors.py BATCH MAX_LENGTH"
import os, sys, json, collections, resource
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
from sft_demos.params import load_params
from sft_demos.model import load_base, add_lora
from sft_demos.preflight import memory_plan
B, L = int(sys.argv[1]), int(sys.argv[2]); over = dict(a.split("=", 1) for a in sys.argv[3:])
p = load_params("smollm2-135m", overrides=over)
m = add_lora(p, load_base(p)); m.train()
store, by = {}, collections.Counter()
def pack(t):
    try:
        s = t.untyped_storage(); key = (s.data_ptr(), s.nbytes())
        if key not in store: store[key] = s.nbytes(); by[(tuple(t.shape), str(t.dtype))] += s.nbytes()
    except Exception: pass
    return t
x = torch.randint(3, m.config.vocab_size, (B, L))
with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
    out = m(input_ids=x, labels=x)
params = {s.data_ptr() for q in m.parameters() for s in [q.untyped_storage()]}
saved = sum(v for (ptr, _), v in store.items() if ptr not in params)
plan = memory_plan(m.config, load_params("smollm2-135m", overrides={**over, "per_device_train_batch_size": B, "max_length": L}))
t = plan["terms"]; tok = B * L; layers = m.config.num_hidden_layers
print(json.dumps({"B": B, "L": L, "over": over, "saved_MB": round(saved / 2**20, 1),
                  "plan_act_MB": round(t["activations"] / 2**20, 1), "plan_logits_MB": round(t["logits"] / 2**20, 1),
                  "saved_per_token_layer": round(saved / tok / layers),
                  "top": [(str(k), round(v / 2**20, 1)) for k, v in by.most_common(14)]}, indent=1))
