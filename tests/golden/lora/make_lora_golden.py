#!/usr/bin/env python3
# make_lora_golden.py - development script, NOT part of the build or the test
# suite: it made the LoRA goldens in this directory (see README.md here).
#
# For each random fixture model (../shared/fixtures/models) it
#   1. writes a float32 copy of the model (the goldens are float32);
#   2. draws a random LoRA adapter in RWKV-PEFT's layout: NAME.lora_A [r][in]
#      and NAME.lora_B [out][r] for the Linear layers RWKV-PEFT wraps, plus
#      the tensors RWKV-PEFT's default --train_parts ["time", "ln"] saves
#      beside them (every tensor whose name holds "time" or "ln"), perturbed
#      as training would;
#   3. merges the adapter into the float32 copy with RWKV-PEFT's own
#      merge/merge_lora.py (run as a program: lora_alpha base lora output);
#   4. runs the official rwkv package (ChatRWKV rwkv_pip_package, RWKV_x070
#      for RWKV-7, RWKV(..., 'cpu fp32') otherwise) on the merged model over
#      the fixture's tokens, one token at a time from the zero state, and
#      writes the logits as little-endian float32 rows.
# As a check of the set-up it also runs the package on the unmerged float32
# copy and records how far that is from the fixture's own golden logits.
#
# Usage: make_lora_golden.py FIXTURES PEFT_MERGE_SCRIPT RWKV_PKG_ROOT OUTDIR [7|456]
# (CPU only; needs torch and numpy.)
import json
import os
import subprocess
import sys

os.environ["CUDA_VISIBLE_DEVICES"] = ""
# The package binds RWKV to RWKV_x070 when RWKV_V7_ON=1, so RWKV-7 and
# RWKV-4/5/6 run in separate processes (the PART argument).
part = sys.argv[5] if len(sys.argv) > 5 else "all"
if part == "all":
    for p in ("7", "456"):
        subprocess.run([sys.executable] + sys.argv[:5] + [p], check=True)
    sys.exit(0)
if part == "7":
    os.environ["RWKV_V7_ON"] = "1"
os.environ["RWKV_JIT_ON"] = "1"
os.environ["RWKV_CUDA_ON"] = "0"

import numpy as np
import torch

fixtures, merge_script, pkg_root, outdir = sys.argv[1:5]
sys.path.insert(0, pkg_root)
from rwkv.model import RWKV  # noqa: E402
if part == "7":
    from rwkv.model import RWKV_x070  # noqa: E402

torch.set_num_threads(4)
os.makedirs(outdir, exist_ok=True)
work = os.path.join(outdir, "work")
os.makedirs(work, exist_ok=True)

# The Linear layers RWKV-PEFT makes LoRA-capable (rwkvt/rwkvN/att.py, ffn.py).
TARGETS = {
    "7": ["att.receptance", "att.key", "att.value", "att.output", "ffn.key", "ffn.value"],
    "6": ["att.receptance", "att.key", "att.value", "att.output", "att.gate",
          "ffn.key", "ffn.receptance", "ffn.value"],
    "5.2": ["att.receptance", "att.key", "att.value", "att.output", "att.gate",
            "ffn.key", "ffn.receptance", "ffn.value"],
    "4": ["att.receptance", "att.key", "att.value", "att.output",
          "ffn.key", "ffn.receptance", "ffn.value"],
}


def n_layers(sd):
    return 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))


def make_adapter(sd, version, rank, seed, layers=None, targets=None, parts=True):
    g = torch.Generator().manual_seed(seed)
    ad = {}
    for layer in range(n_layers(sd)):
        if layers is not None and layer not in layers:
            continue
        for t in (targets or TARGETS[version]):
            w = sd[f"blocks.{layer}.{t}.weight"]
            out_f, in_f = w.shape
            # A as RWKV-PEFT initialises it (kaiming uniform, a=sqrt(5):
            # U(-1/sqrt(in), 1/sqrt(in))); B trained away from its zero start
            a = (torch.rand(rank, in_f, generator=g) * 2 - 1) / in_f ** 0.5
            b = torch.randn(out_f, rank, generator=g) * 0.03
            ad[f"blocks.{layer}.{t}.lora_A"] = a.float().contiguous()
            ad[f"blocks.{layer}.{t}.lora_B"] = b.float().contiguous()
    if parts:
        for k, v in sd.items():
            if "time" in k or "ln" in k:
                noise = torch.randn(v.shape, generator=g) * 0.02
                ad[k] = (v.float() + noise).contiguous()
    return ad


def run_package(path_no_ext, version, tokens):
    if version == "7":
        model = RWKV_x070(path_no_ext, "cpu fp32")
    else:
        model = RWKV(path_no_ext, "cpu fp32", verbose=False)
    state = None
    rows = []
    with torch.no_grad():
        for tok in tokens:
            out, state = model.forward([tok], state)
            rows.append(out.float().cpu().numpy().copy())
    return np.stack(rows).astype("<f4")


def merge(base, adapter, alpha, out):
    subprocess.run([sys.executable, merge_script, str(alpha), base, adapter, out],
                   check=True, stdout=subprocess.DEVNULL)


def golden(name, version, adapters, out_name):
    """adapters: list of (adapter dict, rank, alpha, file name)."""
    sd = torch.load(os.path.join(fixtures, name + ".pth"), map_location="cpu")
    base = os.path.join(work, name + ".f32.pth")
    torch.save({k: v.float().contiguous() for k, v in sd.items()}, base)
    tokens = [int(x) for x in open(os.path.join(fixtures, name + ".tokens")).read().split()]
    ref = np.fromfile(os.path.join(fixtures, name + ".logits.f32"), dtype="<f4")
    check = run_package(base[:-4], version, tokens)
    entry = {"model": name + ".pth", "version": version, "n_tokens": len(tokens),
             "package_vs_fixture_golden_unmerged": float(np.abs(check.ravel() - ref).max()),
             "adapters": []}
    cur = base
    for i, (ad, rank, alpha, fname) in enumerate(adapters):
        apath = os.path.join(outdir, fname)
        torch.save(ad, apath)
        merged = os.path.join(work, f"{out_name}.merged{i}.pth")
        merge(cur, apath, alpha, merged)
        cur = merged
        n_pairs = sum(k.endswith(".lora_A") for k in ad)
        entry["adapters"].append({"file": fname, "rank": rank, "lora_alpha": alpha,
                                  "scale": alpha / rank, "lora_pairs": n_pairs,
                                  "replaced_tensors": len(ad) - 2 * n_pairs})
    logits = run_package(cur[:-4], version, tokens)
    logits.tofile(os.path.join(outdir, out_name + ".logits.f32"))
    entry["logits"] = out_name + ".logits.f32"
    entry["max_abs_diff_vs_unmerged"] = float(np.abs(logits - check).max())
    entry["logit_std"] = float(logits.std())
    return entry


manifest = []
if part == "7":
    sd7 = torch.load(os.path.join(fixtures, "v7-fp32.pth"), map_location="cpu")
    a7 = make_adapter(sd7, "7", 4, 7001)
    b7 = make_adapter(sd7, "7", 2, 7002, layers=[0, 2], targets=["att.key", "ffn.value"],
                      parts=False)
    manifest.append(golden("v7-fp32", "7", [(a7, 4, 8, "v7-fp32.lora.pth")], "v7-fp32.lora"))
    manifest.append(golden("v7-fp32", "7", [(a7, 4, 8, "v7-fp32.lora.pth"),
                                            (b7, 2, 1, "v7-fp32.lora2.pth")],
                           "v7-fp32.lora-lora2"))
else:
    for name, version, seed in (("v6", "6", 6001), ("v5.2", "5.2", 5001), ("v4", "4", 4001)):
        sd = torch.load(os.path.join(fixtures, name + ".pth"), map_location="cpu")
        ad = make_adapter(sd, version, 4, seed)
        manifest.append(golden(name, version, [(ad, 4, 8, name + ".lora.pth")],
                               name + ".lora"))

with open(os.path.join(outdir, "manifest-%s.json" % part), "w") as f:
    json.dump({"torch": torch.__version__, "entries": manifest}, f, indent=1)
print(json.dumps(manifest, indent=1))
