"""Where one create's time goes between the processes: the three services traced by strace
(every read and write on their sockets, with the time), creates made one at a time and each
followed on its job's stream, then each create cut at the same landmarks (the POST read, the
202 written, the command published, delivered, the clone sent and ended, the outcome published
and delivered, the status service's COMMIT, the last frame written). Prints the median of each
segment, and one create's whole timeline with `--show`.

strace slows every system call it sees (a ptrace stop each): the figures are longer than an
untraced create's, and only their proportions and order mean something. Needs strace and the
right to trace the services (root, or ptrace allowed).

    uv run --frozen python -m bench.trace --creates 12 [--show]
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from bench.instances import TINY, Bench, drop_prefixed

CALLS = "sendto,recvfrom,write,read,writev,sendmsg,recvmsg"
LINE = re.compile(r"^\d+\s+(?P<ts>\d+\.\d+) (?P<call>\w+)\((?P<rest>.*)$")

# Each landmark: (name, service, call names, a pattern of what was read or written, which one
# of the matches inside the create: first or last).
LANDMARKS: list[tuple[str, str, tuple[str, ...], str, str]] = [
    ("POST read", "gateway", ("read", "recvfrom"), r"POST /v2/dbInstances", "first"),
    ("202 written", "gateway", ("write", "sendto", "writev"), r"HTTP/1.1 202", "first"),
    (
        "command published",
        "gateway",
        ("write", "sendto", "writev"),
        r"instances\.requests",
        "first",
    ),
    ("command delivered", "provisioner", ("read", "recvfrom"), r"instances\.requests", "first"),
    ("clone sent", "provisioner", ("write", "sendto"), r"CREATE DATABASE", "first"),
    ("clone ended", "provisioner", ("read", "recvfrom"), r"CREATE DATABASE", "first"),
    (
        "outcome published",
        "provisioner",
        ("write", "sendto", "writev"),
        r"Instance\w*Created",
        "last",
    ),
    ("outcome delivered", "status", ("read", "recvfrom"), r"instances\.events", "last"),
    ("status committed", "status", ("read", "recvfrom"), r"COMMIT", "last"),
    ("last frame written", "gateway", ("write", "sendto", "writev"), r"event: job", "last"),
]
SERVICES = ("gateway", "provisioner", "status")


def events(path: Path) -> list[tuple[float, str, str, str]]:
    """(time, service, call, the rest of the line) of each traced call."""
    out = []
    service = path.stem
    for line in path.read_text(errors="replace").splitlines():
        m = LINE.match(line)
        if m:
            out.append((float(m["ts"]), service, m["call"], m["rest"]))
    return out


def landmarks(
    traced: list[tuple[float, str, str, str]], start: float, end: float
) -> dict[str, float]:
    """Each landmark's time (ms after `start`) inside one create's window."""
    found: dict[str, float] = {}
    inside = [e for e in traced if start <= e[0] <= end]
    for name, service, calls, pattern, which in LANDMARKS:
        hits = [
            e[0] for e in inside if e[1] == service and e[2] in calls and re.search(pattern, e[3])
        ]
        if hits:
            found[name] = ((hits[0] if which == "first" else hits[-1]) - start) * 1000
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--creates", type=int, default=12)
    parser.add_argument("--show", action="store_true", help="print one create's timeline")
    args = parser.parse_args()
    strace = shutil.which("strace")
    if strace is None:
        raise SystemExit("strace is not installed")
    out = Path(tempfile.mkdtemp(prefix="edfi-im-trace-"))
    tag = uuid.uuid4().hex[:8]
    prefix = f"EdFi_Ods_trace{tag}_"
    b = Bench(f"trace_{tag}", prefix, 8, {"Minimal": TINY})
    windows: list[tuple[float, float]] = []
    try:
        b.start()
        for k in range(3):
            b.create_and_follow(f"Warm {k}", "Minimal")
        tracers = [
            subprocess.Popen(  # noqa: S603 - strace, our own arguments
                [
                    strace,
                    "-f",
                    "-ttt",
                    "-qq",
                    "-s",
                    "96",
                    "-e",
                    f"trace={CALLS}",
                    "-o",
                    str(out / f"{name}.txt"),
                    "-p",
                    str(b.stack.procs[name].pid),
                ]
            )
            for name in SERVICES
        ]
        time.sleep(1.5)  # strace attached
        for i in range(args.creates):
            started = time.time()
            if b.create_and_follow(f"Traced {i}", "Minimal") != "Completed":
                raise RuntimeError("a create did not complete")
            windows.append((started, time.time()))
            time.sleep(0.2)  # nothing of one create in the next one's window
        for tracer in tracers:
            tracer.send_signal(signal.SIGINT)
        for tracer in tracers:
            tracer.wait(timeout=30)
    finally:
        b.close()
        drop_prefixed(prefix)
    traced = sorted(e for name in SERVICES for e in events(out / f"{name}.txt"))
    cut = [landmarks(traced, start, end) for start, end in windows]
    names = [name for name, *_ in LANDMARKS]
    print(f"{len(cut)} creates traced (strace slows each call: proportions, not durations)")
    print(f"{'segment':<48} {'p50 ms':>7}")
    previous = "client's POST sent"
    for name in [*names, "client saw the end"]:
        spans = []
        for marks, (start, end) in zip(cut, windows, strict=True):
            at = (end - start) * 1000 if name == "client saw the end" else marks.get(name)
            before = 0.0 if previous == "client's POST sent" else marks.get(previous)
            if at is not None and before is not None:
                spans.append(at - before)
        if spans:
            print(f"{previous + ' -> ' + name:<48} {statistics.median(spans):>7.2f}")
        previous = name
    totals = [(end - start) * 1000 for start, end in windows]
    print(f"{'whole create':<48} {statistics.median(totals):>7.2f}")
    if args.show:
        middle = sorted(range(len(windows)), key=lambda k: totals[k])[len(windows) // 2]
        start, end = windows[middle]
        print(f"\ncreate {middle}, every traced call (ms after the POST was sent):")
        for ts, service, call, rest in traced:
            if start <= ts <= end:
                print(f"{(ts - start) * 1000:8.2f} {service[:4]} {call}({rest[:110]}")
    print(f"\ntraces: {out}")


if __name__ == "__main__":
    main()
