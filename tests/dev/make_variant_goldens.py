#!/usr/bin/env python3
# make_variant_goldens.py - development script, NOT part of the build or the
# test suite: it made the goldens of tests/golden/variants (see README.md
# there).  It needs Python 3, torch and numpy, and the official code, which
# it imports from the paths given (it is never copied into this project):
#
#   make_variant_goldens.py CHATRWKV_PKG_SRC RWKV_LM_V7_DIR DIR [NAME...]
#
#   CHATRWKV_PKG_SRC  BlinkDL/ChatRWKV's rwkv_pip_package/src (holds rwkv/)
#   RWKV_LM_V7_DIR    BlinkDL/RWKV-LM's RWKV-v7 (rwkv_v8_rc00_demo.py,
#                     rwkv_v7b_demo.py, ...)
#   DIR               holds NAME.pth and NAME.tokens; the goldens go there
#   NAME              v7a (the rwkv package, RWKV_DE_VERSION=1), v7b (the
#                     RWKV-7b DEA demo) or v8 (the RWKV-8 rc00 demo);
#                     default all three
#
# For each model it runs the official code on CPU in float32 (the weights
# as stored, made float32) over NAME.tokens and writes
#   NAME.logits.f32  RNN mode: one token at a time from the zero state,
#                    n_tokens x n_vocab little-endian float32
#   NAME.state.f32   the state after all tokens, layer by layer: att x_prev
#                    [C], wkv [H][N][N] (value index first), ffn x_prev [C]
#                    (v7b: then the DEA query's token-shift vector [Q])
# and records in DIR/manifest.json how far the official sequence mode (all
# tokens at once) and chunked mode (chunks of 5) are from the RNN rows.
#
# The demos are scripts that load CUDA kernels and run prompts at import;
# this script executes their model part (up to "The testing code") with
# these textual changes: no TorchScript (the demo's own nn.Module lines),
# the CUDA extension is not loaded, the wkv operator
# is replaced by the demo's own commented-out "cuda-free method" loop,
# tensors live on the CPU and DTYPE is float32.  Each model runs in its own
# process (the package reads RWKV_DE_VERSION at import).
#
# The 7b demo has no single-token mode (its forward_seq takes a list of one
# token), so RNN mode feeds [token] lists; its state (a list with the token
# ids, the KV caches and the query shifts after the RWKV-7 parts) starts as
# None, which makes the demo build its own zero state.  The demo writes the
# DEA width as the literal 256 (its query norms and query-shift state): the
# script writes the file's width (qkv.qq.weight rows) there instead, and
# keeps the token ids as int64 rather than int32 (torch 1.13 indexes only
# with int64 tensors; the values are the same).  Its
# state list has fixed room for 12 layers, so v7b must have at most 12.
import json
import os
import subprocess
import sys

import numpy as np

CHUNK = 5


def flat_state(state):
    return np.concatenate([s.float().flatten().numpy() for s in state])


def run_rnn_seq_chunks(forward, tokens, zero_state, flatten=None):
    """Logits rows of RNN, sequence and chunked mode, and the RNN state."""
    import copy
    import numpy as np
    import torch

    rows = []
    state = zero_state()
    for tok in tokens:
        out, state = forward(tok, state)
        rows.append(out.float().numpy().copy())
    rnn = np.stack(rows)
    final = (flatten or flat_state)(state)

    out, _ = forward(list(tokens), zero_state(), True)
    seq = out.float().numpy()

    parts = []
    state = zero_state()
    for i in range(0, len(tokens), CHUNK):
        piece = list(tokens[i:i + CHUNK])
        out, state = forward(piece, state, True)
        out = out.float().numpy()
        parts.append(out.reshape(len(piece), -1))
    chunked = np.concatenate(parts)
    _ = copy
    _ = torch
    return rnn, seq, chunked, final


def official_v7a(pkg_src, path):
    os.environ["RWKV_V7_ON"] = "1"
    os.environ["RWKV_DE_VERSION"] = "1"
    os.environ["RWKV_JIT_ON"] = "1"
    os.environ["RWKV_CUDA_ON"] = "0"
    import torch
    plain_load = torch.load

    # torch before 2.1 has no mmap argument (the package passes mmap=True).
    def load(*args, **kwargs):
        kwargs.pop("mmap", None)
        return plain_load(*args, **kwargs)
    torch.load = load
    sys.path.insert(0, pkg_src)
    from rwkv.model import RWKV_x070
    model = RWKV_x070(path[:-len(".pth")], "cpu fp32")

    def forward(idx, state, full=False):
        if isinstance(idx, list) and len(idx) > 1:
            return model.forward_seq(idx, state, full)
        if isinstance(idx, list):
            idx = idx[0]
        return model.forward_one(idx, state)
    return forward, model.generate_zero_state


def demo_source(v7_dir, name):
    with open(os.path.join(v7_dir, name), encoding="utf-8") as f:
        src = f.read()
    src = src[:src.index("# The testing code")]
    cuda_call = 'load(name="wkv7s"'
    assert cuda_call in src
    src = src.replace(cuda_call, '(lambda *a, **k: None)(name="wkv7s"')
    # The wkv operator: the demo's own loop instead of the CUDA kernel.
    lines = src.split("\n")
    out = []
    in_loop = False
    for line in lines:
        if "######## cuda-free method" in line:
            in_loop = True
            out.append(line)
            continue
        if in_loop:
            if line.strip().startswith("# "):
                out.append(line.replace("# ", "", 1))
                continue
            in_loop = False
        if "softplus(-(w0 + w)) - 0.5" in line or "RWKV7_OP(state, r, w, k, v, -kk, kk*a)" in line:
            continue
        out.append(line)
    src = "\n".join(out)
    src = src.replace("map_location='cuda'", "map_location='cpu'")
    src = src.replace('device="cuda"', 'device="cpu"')
    src = src.replace("DTYPE = torch.half", "DTYPE = torch.float32")
    # TorchScript needs a source file: use the demo's own non-JIT lines.
    jit = ("MyModule = torch.jit.ScriptModule\nMyFunction = torch.jit.script_method\n"
           "MyStatic = torch.jit.script\n")
    assert jit in src
    src = src.replace(jit, "MyModule = nn.Module\ndef __nop(ob): return ob\n"
                      "MyFunction = __nop\nMyStatic = __nop\n")
    return src


def official_v8(v7_dir, path):
    import torch
    src = demo_source(v7_dir, "rwkv_v8_rc00_demo.py")
    ns = {"__name__": "rwkv_v8_rc00_demo"}
    exec(compile(src, "rwkv_v8_rc00_demo.py (model part, cuda-free)", "exec"), ns)
    z = torch.load(path, map_location="cpu")
    args = ns["args"]
    args.MODEL_NAME = path[:-len(".pth")]
    args.vocab_size, args.n_embd = z["emb.weight"].shape
    args.n_layer = 1 + max(int(k.split(".")[1]) for k in z if k.startswith("blocks."))
    args.head_size = z["blocks.0.att.r_k"].shape[1]
    model = ns["RWKV_x070"](args)

    def zero_state():
        s = []
        for _ in range(args.n_layer):
            s.append(torch.zeros(args.n_embd))
            s.append(torch.zeros(args.n_embd // args.head_size, args.head_size,
                                 args.head_size))
            s.append(torch.zeros(args.n_embd))
        return s

    def forward(idx, state, full=False):
        return model.forward(idx, state, full)
    return forward, zero_state


def official_v7b(v7_dir, path):
    import torch
    src = demo_source(v7_dir, "rwkv_v7b_demo.py")
    for literal in ("(256,)", "torch.zeros(256,"):
        assert literal in src
    src = src.replace("(256,)", "(DEA_WIDTH,)").replace("torch.zeros(256,",
                                                        "torch.zeros(DEA_WIDTH,")
    # torch 1.13 indexes with int64 tensors only (the demo's token ids are int32).
    assert src.count("dtype=torch.int,") == 2
    src = src.replace("dtype=torch.int,", "dtype=torch.long,")
    ns = {"__name__": "rwkv_v7b_demo"}
    exec(compile(src, "rwkv_v7b_demo.py (model part, cuda-free)", "exec"), ns)
    z = torch.load(path, map_location="cpu")
    args = ns["args"]
    args.MODEL_NAME = path[:-len(".pth")]
    args.vocab_size, args.n_embd = z["emb.weight"].shape
    args.n_layer = 1 + max(int(k.split(".")[1]) for k in z if k.startswith("blocks."))
    args.head_size = z["blocks.0.att.r_k"].shape[1]
    assert args.n_layer <= 12
    ns["DEA_WIDTH"] = z["blocks.0.qkv.qq.weight"].shape[0]
    model = ns["RWKV_x070"](args)
    L = args.n_layer

    def flatten(state):
        parts = []
        for i in range(L):
            parts += [state[i * 3], state[i * 3 + 1], state[i * 3 + 2], state[L * 3 + 25 + i]]
        return flat_state(parts)

    def forward(idx, state, full=False):
        if not isinstance(idx, list):
            idx = [idx]
        out, state = model.forward(idx, state, full)
        if not full:
            out = out.reshape(-1)
        return out, state
    return forward, (lambda: None), flatten


def one(name, pkg_src, v7_dir, outdir):
    import numpy as np
    import torch
    torch.set_num_threads(2)
    path = os.path.join(outdir, name + ".pth")
    with open(os.path.join(outdir, name + ".tokens")) as f:
        tokens = [int(t) for t in f.read().split()]
    flatten = None
    if name == "v7a":
        forward, zero_state = official_v7a(pkg_src, path)
        who = "rwkv package RWKV_x070, RWKV_DE_VERSION=1, 'cpu fp32'"
    elif name == "v7b":
        forward, zero_state, flatten = official_v7b(v7_dir, path)
        who = "RWKV-LM RWKV-v7/rwkv_v7b_demo.py, cuda-free loop, CPU float32"
    else:
        forward, zero_state = official_v8(v7_dir, path)
        who = "RWKV-LM RWKV-v7/rwkv_v8_rc00_demo.py, cuda-free loop, CPU float32"
    rnn, seq, chunked, state = run_rnn_seq_chunks(forward, tokens, zero_state, flatten)
    rnn.astype("<f4").tofile(os.path.join(outdir, name + ".logits.f32"))
    state.astype("<f4").tofile(os.path.join(outdir, name + ".state.f32"))
    return {
        "reference": who,
        "torch": torch.__version__,
        "tokens": len(tokens),
        "vocab": int(rnn.shape[1]),
        "logits_std": float(rnn.std()),
        "argmax_changes": int(np.count_nonzero(np.diff(rnn.argmax(axis=1)))),
        "seq_vs_rnn_max_abs_diff": float(np.abs(seq - rnn).max()),
        "chunked_vs_rnn_max_abs_diff": float(np.abs(chunked - rnn).max()),
        "chunk": CHUNK,
    }


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__ or "usage: make_variant_goldens.py CHATRWKV_PKG_SRC RWKV_LM_V7_DIR DIR")
    pkg_src, v7_dir, outdir = sys.argv[1:4]
    names = sys.argv[4:] or ["v7a", "v7b", "v8"]
    if len(names) == 1 and os.environ.get("MAKE_VARIANT_CHILD") == "1":
        json.dump(one(names[0], pkg_src, v7_dir, outdir), sys.stdout)
        return
    manifest_path = os.path.join(outdir, "manifest.json")
    manifest = {}
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
    for name in names:
        env = dict(os.environ, MAKE_VARIANT_CHILD="1", CUDA_VISIBLE_DEVICES="")
        res = subprocess.run([sys.executable, __file__, pkg_src, v7_dir, outdir, name],
                             env=env, check=True, stdout=subprocess.PIPE)
        manifest[name] = json.loads(res.stdout.decode().strip().split("\n")[-1])
        print(name, manifest[name], file=sys.stderr)
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
