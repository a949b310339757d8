"""One `pada compare` against the simulated competent teacher (benchmarks/sim_teacher.py): a
measuring instrument, so everything it prints is a SIMULATED-TEACHER result, never a real one's.

It starts one sim server per teacher setting, runs the comparison with every strategy under the
noise-free targeted teacher plus named variants for the other settings (they share round 0 with
the rest: only the teacher differs), then stops the servers and prints the comparison id, the
report and each server's /stats.

    python benchmarks/sim_compare.py examples/public/sst2_small.yaml --seeds 3 \\
        --noise 0.1 --noise 0.25 --random --store runs/sim.db

Cells: none, paraphrase, llm2llm, pada (targeted, noise 0); pada-random (random mode, noise 0:
the control that isolates targeting); for each --noise p: paraphrase-nP, llm2llm-nP, pada-nP with
the targeted teacher wrong at rate p (--noise-kind, default correlated: a teacher that wrote an
input for the wrong label also re-solves and grades it wrongly). --variant adds a named cell with
settings of its own, served by the targeted teacher or by one named after `@`:

    --variant 'pada-tv1=pada quality.max_label_tv=1' --variant 'pada-n10-tv1=pada@n10 quality.max_label_tv=1'
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SIM = HERE / "sim_teacher.py"


class Server:
    def __init__(self, data: Path, pool: Path, *args: str) -> None:
        self.args = args
        self.proc = subprocess.Popen([sys.executable, str(SIM), "--data", str(data), "--pool", str(pool),
                                      "--port", "0", *args], stdout=subprocess.PIPE, text=True)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout=300)
        if not line or not line[0].startswith("listening on "):
            self.proc.kill()
            raise SystemExit(f"sim_teacher {' '.join(args)} did not start")
        self.url = line[0].split()[-1]

    def stats(self) -> dict:
        import urllib.request

        with urllib.request.urlopen(self.url.removesuffix("/v1") + "/stats", timeout=30) as reply:
            return dict(json.loads(reply.read()))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def teacher(server: Server) -> str:
    return f"models.teacher=openai:{server.url}#sim"


def own_variant(spec: str, servers: dict[str, Server]) -> str:
    """'NAME=STRATEGY[@SERVER] KEY=VALUE...' as `pada compare --variant` takes it, with the
    named server's teacher set."""
    name, _, rest = spec.partition("=")
    strategy, *settings = rest.split()
    strategy, _, server = strategy.partition("@")
    if (server or "targeted") not in servers:
        raise SystemExit(f"--variant {spec!r}: no {server!r} teacher (have {', '.join(servers)})")
    return " ".join([f"{name}={strategy}", teacher(servers[server or "targeted"]), *settings])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", type=Path)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--noise", type=float, action="append", default=[],
                    help="another targeted teacher, wrong at p (repeatable)")
    ap.add_argument("--noise-kind", choices=["correlated", "independent"], default="correlated")
    ap.add_argument("--top-k", type=int, default=8,
                    help="targeted teachers pick among this many nearest pool items not yet served in the "
                         "run's generation stage")
    ap.add_argument("--random", action="store_true", help="add pada with the random-mode teacher")
    ap.add_argument("--strategies", default="none,paraphrase,llm2llm,pada")
    ap.add_argument("--noisy-strategies", default="paraphrase,llm2llm,pada",
                    help="strategies repeated under each noisy teacher")
    ap.add_argument("--store", default="runs/sim.db")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--extend", metavar="ID", help="add the --variant cells to this comparison (pada compare "
                    "--resume ID --variant ...) instead of starting one; the config must be the comparison's")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=STRATEGY[@SERVER] KEY=VALUE...",
                    help="another cell; SERVER: targeted (default), random, or nP (needs --noise p; "
                         "--noisy-strategies '' runs no other cell under it)")
    args = ap.parse_args()
    # A plain `kill` must still stop the servers (the finally below) and the comparison, which
    # `subprocess.run` kills on the way out; `pada compare --resume ID` continues it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    raw = yaml.safe_load(args.config.read_text())
    data = (args.config.parent / raw["data"]["train"]).parent
    pool = data / "pool.jsonl"
    top = ("--top-k", str(args.top_k))
    servers = {"targeted": Server(data, pool, "--mode", "targeted", *top)}
    try:
        if args.random or any("@random" in v.split("=", 1)[-1].split()[0] for v in args.variant):
            servers["random"] = Server(data, pool, "--mode", "random")
        for p in args.noise:
            servers[f"n{round(100 * p)}"] = Server(data, pool, "--mode", "targeted", "--noise", str(p),
                                                   "--noise-kind", args.noise_kind, *top)
        variants = []
        if args.random:
            variants.append(f"pada-random=pada {teacher(servers['random'])}")
        for p in args.noise:
            tag = f"n{round(100 * p)}"
            noisy = [s for s in args.noisy_strategies.split(",") if s]
            variants += [f"{s}-{tag}={s} {teacher(servers[tag])}" for s in noisy]
        variants += [own_variant(v, servers) for v in args.variant]
        # One request at a time (teacher.concurrency=1): a sim's picks depend on the order within a stage.
        if args.extend:  # the saved config keeps its settings; the new cells name their teacher
            cmd = [sys.executable, "-m", "pada_local.cli", "compare", "--resume", args.extend,
                   "--store", args.store, *[f"--variant={v}" for v in variants]]
        else:
            cmd = [sys.executable, "-m", "pada_local.cli", "compare", str(args.config),
                   "--seeds", str(args.seeds), "--strategies", args.strategies, "--store", args.store,
                   "--set", teacher(servers["targeted"]), "--set", "teacher.concurrency=1",
                   *[f"--set={s}" for s in args.set], *[f"--variant={v}" for v in variants]]
        print("SIMULATED TEACHER:", " ".join(cmd), file=sys.stderr, flush=True)
        start = time.time()
        done = subprocess.run(cmd)
        print(f"wall: {time.time() - start:.0f} s", flush=True)
        for name, server in servers.items():
            print(f"sim {name} ({' '.join(server.args)}) /stats:", json.dumps(server.stats()), flush=True)
        return done.returncode
    finally:
        for server in servers.values():
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
