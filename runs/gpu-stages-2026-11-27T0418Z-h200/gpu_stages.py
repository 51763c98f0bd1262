"Run the data, train, eval and profile stage functions of tiny-cpu on the GPU, with the settings the GPU recipes use."
import json, os, shutil, sys, time, traceback
from pathlib import Path
os.environ.setdefault("HF_HUB_OFFLINE", "1"); os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
import torch
from sft_demos.params import load_params, save_params
# as recorded it took the stage functions from pipeline.STAGE_FUNCS, since replaced by rundir.stage_fn
from sft_demos.rundir import stage_fn
out, run = Path(os.environ["OUT"]), Path("/tmp/gpu-run")
sets = dict(optim="paged_adamw_8bit", gradient_checkpointing=True, packing=True)
p = load_params("tiny-cpu", overrides=sets)
run.mkdir(parents=True, exist_ok=True); save_params(p, run / "params.yaml")
res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "overrides": sets, "stages": {}}
for s in ["data", "train", "eval", "profile"]:
    t = time.time()
    try:
        stage_fn(s)(p, run)
        res["stages"][s] = {"ok": True, "seconds": round(time.time() - t, 1)}
    except Exception:
        res["stages"][s] = {"ok": False, "seconds": round(time.time() - t, 1), "error": traceback.format_exc()[-4000:]}
    print(s, json.dumps(res["stages"][s])[:3000], flush=True)
    (out / "stages.json").write_text(json.dumps(res, indent=1))
for f in ["train_summary.json", "metrics.md", "runtime.md", "samples.md", "log.json"]:
    if (run / f).exists(): shutil.copy(run / f, out / f)
