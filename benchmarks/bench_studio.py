#!/usr/bin/env python3
"""What the studio's live preview costs: step time through the studio against the
command line's loop, and the time from "Start" to the first preview.

Both run the bundled cat in the swirls' style with the real VGG16 (``weights/vgg16.h5``)
at ``--size`` px for ``--iters`` Adam steps, reporting every ``--report-every`` steps:
  * ``cli``: :func:`nst_jax.engine.iterate`, as ``nst-jax stylize`` drives it (a progress
    line per report);
  * ``studio``: a job of the studio app (:mod:`nst_jax.studio`) while a client reads its
    Server-Sent Events stream: after every report the image is PNG-encoded and every
    job's state is serialised and streamed.
Per-step time is the wall time after the first report (compilation excluded) divided
by the steps after it. Goal: studio / cli at most 1.05.

    python benchmarks/bench_studio.py           # 256 px, 100 steps, a report every 10

Prints a table and writes JSON (default ``benchmarks/results/bench_studio-<platform>.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax

from nst_jax.cli import default_xla_flags
from nst_jax.config import Config
from nst_jax.engine import iterate
from nst_jax.image import load_image
from nst_jax.weights import load_weights

ROOT = Path(__file__).resolve().parents[1]
default_xla_flags()  # the command-line tools' XLA:CPU flag; read when the backend starts


def cli_run(params, spec, size: int, iters: int, every: int) -> dict:
    content = load_image(ROOT / "examples" / "content_chelsea.png", size)
    style = load_image(ROOT / "examples" / "style_swirls.png", size)
    t0 = time.perf_counter()
    first = None
    for p in iterate(content, style, params, spec, config=Config(iterations=iters, report_every=every)):
        print(f"\r{p.step}/{iters}", end="", file=sys.stderr)  # what the CLI's bar does
        if first is None:
            first = time.perf_counter() - t0
    wall = time.perf_counter() - t0
    print(file=sys.stderr)
    return {"first_report_s": first, "compile_s": p.compile_s,
            "s_per_step": (wall - first) / (iters - every)}


def studio_run(params, spec, size: int, iters: int, every: int, out: Path) -> dict:
    from starlette.testclient import TestClient

    from nst_jax.studio.app import create_app

    app = create_app(out, params, spec, {"source": "bench"})
    with TestClient(app) as c:
        events = []

        def listen() -> None:
            with c.stream("GET", "/api/events") as s:
                for line in s.iter_lines():
                    if line.startswith("data:"):
                        snap = json.loads(line[5:])
                        events.append(snap["version"])
                        if snap["jobs"] and snap["jobs"][0]["state"] in ("done", "failed"):
                            return

        th = threading.Thread(target=listen, daemon=True)
        th.start()
        job = c.post("/api/jobs", json={
            "content": "example:content_chelsea.png", "styles": ["example:style_swirls.png"],
            "size": str(size), "iters": str(iters), "report_every": str(every)}).json()["job"]
        th.join(3600)
        j = c.get(f"/api/jobs/{job}").json()
    assert j["state"] == "done", j
    return {"first_report_s": j["first_preview_s"], "compile_s": j["compile_s"],
            "s_per_step": (j["finished_s"] - j["first_preview_s"]) / (iters - every),
            "events_streamed": len(events)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--report-every", type=int, default=10)
    ap.add_argument("--weights", default=str(ROOT / "weights" / "vgg16.h5"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import tempfile

    params, spec = load_weights(args.weights)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("cli", "studio", "cli2", "studio2"):  # interleaved: drift hits both
            f = cli_run if name.startswith("cli") else studio_run
            extra = () if name.startswith("cli") else (Path(tmp) / name,)
            rows[name] = f(params, spec, args.size, args.iters, args.report_every, *extra)
            print(f"{name:8} {rows[name]}", flush=True)
    cli = min(rows["cli"]["s_per_step"], rows["cli2"]["s_per_step"])
    studio = min(rows["studio"]["s_per_step"], rows["studio2"]["s_per_step"])
    print(f"\n{'':8} {'s/step':>8} {'first preview s':>16} {'of which compile s':>19}")
    for name in ("cli", "studio"):
        r = rows[name + "2"]
        print(f"{name:8} {min(rows[name]['s_per_step'], r['s_per_step']):8.3f} "
              f"{rows[name]['first_report_s']:16.2f} {rows[name]['compile_s']:19.2f}")
    print(f"studio / cli step time: {studio / cli:.3f} (goal <= 1.05)")
    dev = jax.devices()[0]
    path = Path(args.json or ROOT / "benchmarks" / "results" / f"bench_studio-{dev.platform}.json")
    from benchmarks.common import cpu_info

    path.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "jax": jax.__version__, "cpu": cpu_info(),
                                "device": str(dev), "size": args.size, "iters": args.iters,
                                "report_every": args.report_every, "runs": rows,
                                "studio_vs_cli": studio / cli}, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
