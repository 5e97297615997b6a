#!/usr/bin/env python3
"""nst_jax against neural-style-pt (PyPI ``neural-style`` 0.5.7): per iteration and to quality.

The peer is installed by you, not by this script (it is a few GB with PyTorch):

    pip install torch torchvision              # here: torch==2.14.1 torchvision==0.29.1
    pip install --no-deps neural-style==0.5.7  # the console script ``neural-style``
    python benchmarks/bench_peer.py            # 256 px, the four configurations
    python benchmarks/bench_peer.py --sizes 512 --configs lbfgs-noise adam-content

(``--peer PATH`` points at a ``neural-style`` script in another environment; the
script's own interpreter then converts the weights.)

**One objective.** Both tools run the peer's objective: ``-content_weight 5
-style_weight 100 -tv_weight 0``, content ``relu4_2``, style ``relu1_1 .. relu5_1``
at weight 1 each, i.e. nst_jax's ``--normalization jcjohnson --alpha 5 --beta 100``
with layer weights 1. The peer feeds the network ``rgb * 256 - mean`` (its
``preprocess`` scales by 256, not 255), so nst_jax gets a copy of its VGG16 whose
stored preprocessing says scale 256, and the peer gets the same numbers as a caffe
``.pth``. Content and style are resized once, here, to the run's size, so neither
tool resizes. Before any timing, ``check``: the peer's own reported loss at an
image (``-init image``, one evaluation) against nst_jax's objective at the same
PNG, to 1e-5 relative.

**One evaluator.** Every PNG either tool saves (every ``--save-every`` iterations and
the final one) is scored by nst_jax's objective above, so the box (nst_jax keeps
pixels in [0, 1]; the peer clamps only when saving) and 8-bit rounding count alike.

**Time** is the file's modification time minus the moment the process was
started: start-up, loading and compilation included, as a user waits. ``s/iter``
is the slope between the first and the last saved iterate (compilation excluded).
Runs are interleaved (peer, nst_jax, peer, ...) because the machine's speed drifts.
``time to target``: the first saved image whose J is at most the peer's final J.

Rows (per configuration and size): the peer; nst_jax with the same settings
(``same``); nst_jax's fastest settings found for that configuration (``fast``:
:data:`FAST`, any settings, the same objective). Writes JSON with every trajectory
(``benchmarks/results/bench_peer-cpu.json``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import cpu_info  # noqa: E402

STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
ALPHA, BETA, ADAM_LR = 5.0, 100.0, 10.0  # the peer's defaults; Adam lr in its 0..256 units
CONFIGS = {  # name: (optimizer, start)
    "lbfgs-noise": ("lbfgs", "noise"), "lbfgs-content": ("lbfgs", "content"),
    "adam-noise": ("adam", "noise"), "adam-content": ("adam", "content"),
}
#: nst_jax's settings per configuration for the time-to-quality rows (any flags; the
#: objective is fixed by the common flags). Chosen by runs of this script: L-BFGS from
#: the content crosses every configuration's target first (the peer's Adam targets by
#: iteration ~40, its L-BFGS ones by ~70, at 256 px).
FAST = {
    "lbfgs-noise": "--optimizer lbfgs --init content --iters 150",
    "lbfgs-content": "--optimizer lbfgs --init content --iters 150",
    "adam-noise": "--optimizer lbfgs --init content --iters 100",
    "adam-content": "--optimizer lbfgs --init content --iters 100",
}


# ----------------------------------------------------------------------------- set-up


def peer_python(script: Path) -> str:
    """The interpreter of a console script (its ``#!`` line), which has torch."""
    first = script.read_text(errors="replace").splitlines()[0]
    return first[2:].strip() if first.startswith("#!") else sys.executable


def caffe_state(params: dict) -> dict[str, np.ndarray]:
    """nst_jax VGG16 params (HWIO, BGR input) -> the peer's ``features.N`` (OIHW, BGR)."""
    from nst_jax import vgg

    out, i = {}, 0
    for name in vgg.layer_names("vgg16"):
        if name.endswith("_1") and name != "conv1_1":
            i += 1  # the pooling module before each block
        k = np.asarray(params[name]["kernel"], np.float32)
        out[f"features.{i}.weight"] = np.ascontiguousarray(k.transpose(3, 2, 0, 1))
        out[f"features.{i}.bias"] = np.asarray(params[name]["bias"], np.float32)
        i += 2  # conv, relu
    return out


def prepare(work: Path, weights: str, peer: Path, sizes: list[int]) -> dict:
    """Weights for both tools and the resized inputs; returns their paths."""
    from PIL import Image

    from nst_jax import vgg
    from nst_jax.image import load_image, to_uint8
    from nst_jax.weights import load_weights, write_weights

    params, spec = load_weights(weights)
    if vgg.arch_of(params) != "vgg16" or spec != vgg.CAFFE:
        raise SystemExit(f"{weights}: the comparison needs caffe-preprocessed VGG16 weights")
    np_params = {k: {n: np.asarray(a) for n, a in v.items()} for k, v in params.items()}
    w256 = write_weights(work / "vgg16-scale256.h5", np_params, "vgg16",
                         vgg.Preprocessing(scale=256.0), {"source": f"{weights}, scale 256"})
    np.savez(work / "state.npz", **caffe_state(np_params))
    pth = work / "vgg16-nst.pth"  # the peer picks the architecture from "16" in the name
    subprocess.run([peer_python(peer), "-c", "import sys, numpy, torch; d = numpy.load(sys.argv[1]); "
                    "torch.save({k: torch.from_numpy(d[k]) for k in d.files}, sys.argv[2])",
                    str(work / "state.npz"), str(pth)], check=True)
    images = {}
    for size in sizes:  # resized once, by nst_jax's own loader (Lanczos), saved 8-bit
        for role, name in (("content", "content_chelsea.png"), ("style", "style_swirls.png")):
            images[(role, size)] = work / f"{role}-{size}.png"
            Image.fromarray(to_uint8(load_image(ROOT / "examples" / name, size))).save(images[(role, size)])
    return {"w256": w256, "pth": pth, "images": images}


class Evaluator:
    """The peer's objective at a saved PNG, computed by nst_jax: :func:`nst_jax.problem.evaluate`
    with the targets computed once per size and the objective compiled once (hundreds of PNGs)."""

    def __init__(self, w256: Path, images: dict):
        import jax

        from nst_jax.config import Config
        from nst_jax.image import load_image
        from nst_jax.problem import compute_targets, network_inputs, objective, to_variable
        from nst_jax.weights import load_weights

        self.params, self.spec = load_weights(w256)
        self.config = Config(alpha=ALPHA, beta=BETA, normalization="jcjohnson",
                             style_weights=(1.0,) * 5, style_layers=STYLE_LAYERS).validate("vgg16")
        self.load, self.to_variable = load_image, to_variable
        self.targets, self.fn = {}, jax.jit(objective, static_argnums=(3, 4))
        for (role, size), path in images.items():
            if role == "content":
                c, s = network_inputs(load_image(path), [load_image(images[("style", size)])], self.config)
                self.targets[size] = compute_targets(self.params, self.spec, c, s, self.config)

    def fits(self, png: Path, size: int) -> bool:
        """Whether ``png`` has the size of the run's content image."""
        from PIL import Image

        with Image.open(png) as im:
            return max(im.size) == size

    def __call__(self, png: Path, size: int) -> float:
        X = self.to_variable(self.load(png), self.config)
        J, _ = self.fn(X, self.params, self.targets[size], self.config, self.spec)
        return float(J)


# ----------------------------------------------------------------------------- runs


def common_nst(size: int, prep: dict, out: Path, save_every: int) -> list[str]:
    layers = ",".join(f"{n}:1" for n in STYLE_LAYERS)
    return [sys.executable, str(ROOT / "scripts" / "stylize.py"), str(prep["images"][("content", size)]),
            str(prep["images"][("style", size)]), "--size", str(size), "--weights", str(prep["w256"]),
            "--normalization", "jcjohnson", "--alpha", str(ALPHA), "--beta", str(BETA),
            "--content-layer", "conv4_2", "--style-layers", layers, "--tv-weight", "0",
            "--seed", "0", "--quiet", "--save-every", str(save_every), "-o", str(out)]


def same_flags(config: str, iters: int) -> str:
    """nst_jax's flags that mirror the peer's settings of ``config``."""
    opt, start = CONFIGS[config]
    # the peer's L-BFGS: 100 pairs, the full quasi-Newton step (no line search)
    lr = f" --lr {ADAM_LR / 256:.6g}" if opt == "adam" else " --lbfgs-history 100 --lbfgs-linesearch none"
    return f"--optimizer {opt} --init {start} --iters {iters}{lr}"


def peer_cmd(peer: Path, config: str, size: int, prep: dict, out: Path, iters: int,
             save_every: int) -> list[str]:
    opt, start = CONFIGS[config]
    cmd = [str(peer), "-content_image", str(prep["images"][("content", size)]),
           "-style_image", str(prep["images"][("style", size)]), "-image_size", str(size),
           "-gpu", "c", "-model_file", str(prep["pth"]), "-disable_check",
           "-content_weight", str(ALPHA), "-style_weight", str(BETA), "-tv_weight", "0",
           "-optimizer", opt, "-init", "random" if start == "noise" else "image",
           "-num_iterations", str(iters), "-save_iter", str(save_every), "-print_iter", "0",
           "-seed", "0", "-output_image", str(out)]
    return cmd + (["-learning_rate", str(ADAM_LR)] if opt == "adam" else [])


def saved(out: Path, iters: int, tool: str) -> list[tuple[int, Path]]:
    """``(iteration, path)`` of every image a run saved, the final one last."""
    pat = re.compile(rf"{re.escape(out.stem)}_(\d+)\.png" if tool == "peer"
                     else rf"{re.escape(out.stem)}\.(\d+)\.png")
    found = sorted((int(m[1]), p) for p in out.parent.iterdir() if (m := pat.fullmatch(p.name)))
    return [(i, p) for i, p in found if i < iters] + [(iters, out)]


def timed_run(cmd: list[str], out: Path, iters: int, tool: str, size: int, ev: Evaluator) -> dict:
    out.parent.mkdir(parents=True)
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{tool} failed ({proc.returncode}):\n{' '.join(cmd)}\n{proc.stderr[-3000:]}")
    # coarse-to-fine runs also save their smaller first scales: those are not the image
    traj = [(i, p.stat().st_mtime - t0, ev(p, size)) for i, p in saved(out, iters, tool)
            if ev.fits(p, size)]
    (i0, t_0, _), (i1, t_1, _) = traj[0], traj[-1]
    return {"wall_s": wall, "s_per_iter": (t_1 - t_0) / (i1 - i0) if i1 > i0 else None,
            "J": traj[-1][2], "trajectory": [[i, round(t, 3), J] for i, t, J in traj]}


def time_to(traj: list, target: float) -> float | None:
    """The first time at which a saved image's J is at most ``target``."""
    return next((t for _, t, J in traj if J <= target), None)


def check(peer: Path, prep: dict, size: int, ev: Evaluator, work: Path) -> dict:
    """The peer's loss at one image (its own print) against the evaluator, same PNG."""
    from PIL import Image

    from nst_jax.image import load_image, to_uint8

    C = load_image(prep["images"][("content", size)])
    noise = np.random.default_rng(0).uniform(0, 1, C.shape)
    X = work / f"check-{size}.png"
    Image.fromarray(to_uint8(0.7 * C + 0.3 * noise)).save(X)
    cmd = peer_cmd(peer, "adam-content", size, prep, work / f"check-out-{size}.png", 1, 0)
    cmd += ["-init_image", str(X), "-print_iter", "1", "-learning_rate", "0"]
    text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    peer_J = float(re.findall(r"Total loss: (\S+)", text)[-1])
    ours = ev(X, size)
    return {"size": size, "peer_J": peer_J, "nst_jax_J": ours, "rel_diff": abs(ours - peer_J) / abs(peer_J)}


# ----------------------------------------------------------------------------- main


def summarise(rows: list[dict]) -> list[dict]:
    """Per configuration and size: the per-iteration ratio and the time-to-target ratios."""
    out = []
    for key in sorted({(r["config"], r["size"]) for r in rows}):
        mine = [r for r in rows if (r["config"], r["size"]) == key]
        peers = [r for r in mine if r["tool"] == "peer"]
        target = min(r["J"] for r in peers)  # the peer's own final objective (best repeat)
        t_peer = min(time_to(r["trajectory"], target) for r in peers)
        line = {"config": key[0], "size": key[1], "peer_J": target, "peer_time_s": t_peer,
                "peer_s_per_iter": min(r["s_per_iter"] for r in peers)}
        for variant in ("same", "fast"):
            runs = [r for r in mine if r.get("variant") == variant]
            if not runs:
                continue
            times = [t for r in runs if (t := time_to(r["trajectory"], target)) is not None]
            line[variant] = {"J": min(r["J"] for r in runs), "s_per_iter": min(r["s_per_iter"] for r in runs),
                             "time_s": min(times) if times else None,
                             "time_ratio": min(times) / t_peer if times else None}
        out.append(line)
    return out


def _f(v: float | None, spec: str, missing: str = "never") -> str:
    return format(v, spec) if v is not None else missing.rjust(len(format(1.0, spec)))


def print_table(summary: list[dict]) -> None:
    """``speed``: the peer's s/iter over nst_jax's (same settings); ``ratio``: time to the
    peer's final J over the peer's own time to it; ``-``: that variant was not run."""
    print(f"\n{'config':14} {'px':>4} {'peer s/it':>9} {'same s/it':>9} {'speed':>6} {'peer J':>10} "
          f"{'peer s':>7} {'same s':>7} {'ratio':>6} {'fast s':>7} {'ratio':>6}")
    for s in summary:
        same, fast = s.get("same", {}), s.get("fast", {})
        ran = {k: "never" if k in s else "-" for k in ("same", "fast")}
        speed = s["peer_s_per_iter"] / same["s_per_iter"] if same.get("s_per_iter") else None
        cells = [f"{s['config']:14} {s['size']:4} {s['peer_s_per_iter']:9.3f}",
                 _f(same.get("s_per_iter"), "9.3f"),
                 _f(speed, "5.2f", ran["same"]) + "x", f"{s['peer_J']:10.4g} {s['peer_time_s']:7.1f}",
                 _f(same.get("time_s"), "7.1f", ran["same"]), _f(same.get("time_ratio"), "6.2f", ran["same"]),
                 _f(fast.get("time_s"), "7.1f", ran["fast"]), _f(fast.get("time_ratio"), "6.2f", ran["fast"])]
        print(" ".join(cells))


def run_all(args: argparse.Namespace, peer: Path, prep: dict, ev: Evaluator, work: Path) -> list[dict]:
    """Every run, interleaved: per repeat, size and configuration the peer, then nst_jax's variants."""
    fast = FAST | dict(f.split("=", 1) for f in args.fast)
    rows, n = [], 0
    for rep in range(args.repeats):
        for size in args.sizes:
            for config in args.configs:
                runs = [("peer", None, "")]
                same = same_flags(config, args.same_iters or args.iters)
                runs += [("nst_jax", v, same if v == "same" else fast[config])
                         for v in args.variants]
                for tool, variant, flags in runs:
                    n += 1
                    out = work / f"run{n}" / "out.png"
                    if tool == "peer":
                        cmd = peer_cmd(peer, config, size, prep, out, args.iters, args.save_every)
                        iters = args.iters
                    else:
                        cmd = common_nst(size, prep, out, args.save_every) + shlex.split(flags)
                        iters = _iters(flags)
                    r = timed_run(cmd, out, iters, tool, size, ev)
                    r.update(config=config, size=size, tool=tool, variant=variant, flags=flags, repeat=rep)
                    rows.append(r)
                    print(f"{config:14} {size:4} {tool:8} {variant or '':5} {r['wall_s']:7.1f} s "
                          f"J {r['J']:.4g}  {flags}", flush=True)
                    shutil.rmtree(out.parent)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer", default=shutil.which("neural-style"), help="the neural-style console script")
    ap.add_argument("--weights", default=None, help="nst_jax VGG16 weights (default: the one found)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256])
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    ap.add_argument("--iters", type=int, default=300, help="the peer's iterations (and nst_jax's 'same')")
    ap.add_argument("--same-iters", type=int, default=None,
                    help="nst_jax's 'same' iterations (default --iters; fewer still give s/iter)")
    ap.add_argument("--save-every", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--variants", nargs="+", choices=("same", "fast"), default=["same", "fast"])
    ap.add_argument("--fast", nargs="*", default=[], metavar="CONFIG=FLAGS", help="override FAST")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "bench_peer-cpu.json"))
    args = ap.parse_args()
    if not args.peer or not Path(args.peer).is_file():
        raise SystemExit("neural-style not found: pip install torch torchvision && "
                         "pip install --no-deps neural-style==0.5.7 (or give --peer PATH)")
    from nst_jax.weights import find_weights

    peer, weights = Path(args.peer), str(find_weights(args.weights))
    torch_version = subprocess.run([peer_python(peer), "-c", "import torch; print(torch.__version__)"],
                                   capture_output=True, text=True, check=True).stdout.strip()
    checks = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prep = prepare(work, weights, peer, args.sizes)
        ev = Evaluator(prep["w256"], prep["images"])
        for size in args.sizes:
            checks.append(check(peer, prep, size, ev, work))
            c = checks[-1]
            print(f"check {size} px: peer J {c['peer_J']:.7g}, nst_jax {c['nst_jax_J']:.7g}, "
                  f"rel diff {c['rel_diff']:.1e}", flush=True)
            if checks[-1]["rel_diff"] > 1e-5:
                raise SystemExit("the two tools compute different objectives: stopping")
        rows = run_all(args, peer, prep, ev, work)
    summary = summarise(rows)
    print_table(summary)
    Path(args.json).write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_info(),
        "peer": f"neural-style 0.5.7, torch {torch_version}",
        "weights": weights, "iters": args.iters, "save_every": args.save_every, "check": checks,
        "summary": summary, "runs": rows}, indent=1))
    print(f"wrote {args.json}")
    return 0


def _iters(flags: str) -> int:
    """The last ``--iters`` in ``flags`` times its ``--scales`` (the saved-image count runs on)."""
    words = shlex.split(flags)
    pick = {w: int(words[i + 1]) for i, w in enumerate(words[:-1]) if w in ("--iters", "--scales")}
    return pick.get("--iters", 400) * pick.get("--scales", 1)


if __name__ == "__main__":
    raise SystemExit(main())
