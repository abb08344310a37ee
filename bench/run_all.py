"""`make bench`: every CPU benchmark side by side in one run; raw JSON in bench/results/, BENCHMARKS.md regenerated.

    python bench/run_all.py [--repeats 3] [--train-repeats 5] [--only sync,ssh,train,estimate,pod,setup] [--no-write]
    python bench/run_all.py --render bench/results/cpu-DATE.json   (the table again from a run's raw results)

Each module measures podtune and its baseline alternately in the same run (the machine is shared and noisy) and
keeps every raw value; the table shows the median with min-max of the repeats. The CPU section of BENCHMARKS.md
(between its bench markers) is rewritten from the results; the GPU section is left as it is.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import bench_estimate, bench_pod, bench_setup, bench_ssh, bench_sync, bench_train  # noqa: E402
from bench.common import machine  # noqa: E402

RESULTS = REPO / "bench" / "results"
DOC = REPO / "BENCHMARKS.md"
START, END = "<!-- bench:cpu:start -->", "<!-- bench:cpu:end -->"


def _mm(s: dict, fmt: str = "{:.2f}", unit: str = "") -> str:
    """median (min-max) of a summary."""
    if not s or s.get("median") is None:
        return "n/a"
    f = lambda v: fmt.format(v)  # noqa: E731
    return f"{f(s['median'])}{unit} ({f(s['min'])}-{f(s['max'])})"


def _phases(d: dict, *names: str) -> str:
    """The summed medians of some phases of the runs (the state DB's timing), e.g. provision + connect."""
    phases = d.get("phases_s") or {}
    total = sum(phases[n]["median"] for n in names if n in phases and phases[n].get("median") is not None)
    return f"{total:.2f} s"


def _ok(passed: bool) -> str:
    return "yes" if passed else "**no**"


def _straddle(s: dict, target: float) -> str:
    """A warning beside a median's verdict when the runs fall on both sides of the target: noise decided it."""
    return f" (runs {s['min']:.2f}-{s['max']:.2f} on both sides of {target:g}: noise decides)" if s["min"] <= target < s["max"] else ""


def table(r: dict) -> list[str]:
    rows = ["| metric | podtune | baseline | ratio / figure | target | met | before (issue #14) | what moved it |",
            "|---|---|---|---|---|---|---|---|"]
    t = r.get("train")
    if t:
        tps, rss = t["tokens_per_s"], t["peak_rss_mb"]
        rows.append(
            f"| trainer tokens/s, real tokens ({t['real_tokens']:,} of {t['padded_tokens']:,} padded), "
            f"{t['repeats']} alternating pairs | {_mm(tps['podtune'], '{:,.0f}')} | plain trl {_mm(tps['raw_trl'], '{:,.0f}')}"
            f" | {t['ratio_tokens_per_s']:.2f}x (pairs {_mm(t['ratio_pairs'])}) | >= 1.0x, every setting equal"
            f" | {_ok(t['ratio_tokens_per_s'] >= 1.0)}; {len(t['settings_checked'])} settings asserted equal"
            f" | 1.32x (artifact: trl side with gradient checkpointing, padding counted, 2 repeats)"
            f" | bench made honest (e209095); no trainer change |")
        rows.append(
            f"| trainer peak RSS | {_mm(rss['podtune'], '{:.0f}', ' MB')} | {_mm(rss['raw_trl'], '{:.0f}', ' MB')}"
            f" | {t['ratio_rss']:.2f}x | not above plain trl | {_ok(t['ratio_rss'] <= 1.02)} | 1.02x | - |")
    p = r.get("pod")
    if p:
        lo, em = p["local"], p["emulator"]
        for name, d, before in (("local provider", lo, "1.10x (stop phase 2 s)"), ("RunPod emulator", em, "not measured")):
            rows.append(
                f"| control-plane overhead, tiny recipe, {name} | `podtune run` {_mm(d['wall_s'], '{:.1f}', ' s')}"
                f" | pipeline command run directly {_mm(d['direct_s'], '{:.1f}', ' s')}"
                f" | {_mm(d['overhead_ratio'])}x; before launch {_mm(d.get('before_launch') or d.get('before_launch_s') or d.get('control_plane_to_launch_s'), '{:.2f}', ' s')}"
                f" (of which the pod's resume and SSH connect {_phases(d, 'provision', 'connect')}),"
                f" after `pipeline_done` {_mm(d.get('after_done_s'), '{:.2f}', ' s')}"
                f" | <= 1.03x | {_ok(d['overhead_ratio']['median'] <= 1.03)}{_straddle(d['overhead_ratio'], 1.03)}"
                f" | {before} | pipeline exits without teardown (01b3862), stop at the last event (01b3862),"
                f" zombie-aware job end (9d851ab), one-trip sync (9ed74a2); CLI exits without teardown and the job's end is one"
                f" script (7638e14), loss.png drawn while the pod merges (a91a7d8), paramiko imported while the pod boots"
                f" (58fd9dd), SFTP opened ahead and secrets removed over it (7b73a7c), pod's package check (20652c9),"
                f" the end read from the stream at once (328a06f); **warm start**: the pod's Python imports the"
                f" training libraries while the laptop syncs and sets up (51ef10b); **TCP_NODELAY** on the pod"
                f" connection (ee68a5e), first look for SSH at 0.05 s (8b489f7), stop and resume in one request"
                f" (13f527f), the readiness probe's connection is the session (243e287); the bench times both sides"
                f" with bytecode caches, as a user's machine has them (dff8d78) |")
        ll = em["log_latency"]
        raw = ll.get("podtune_logs_f_raw")
        raw_cell = (f"; `logs -f --raw` (train.log) {_mm(raw['p95'], '{:.3f}', ' s')} ({_mm(raw['p50'], '{:.3f}', ' s')})"
                    if raw else "")
        rows.append(
            f"| log latency pod -> `logs -f`, p95 (p50) | live view {_mm(ll['podtune_logs_f']['p95'], '{:.3f}', ' s')}"
            f" ({_mm(ll['podtune_logs_f']['p50'], '{:.3f}', ' s')}){raw_cell} | `tail -F` over OpenSSH"
            f" {_mm(ll['tail_F_ssh']['p95'], '{:.3f}', ' s')} ({_mm(ll['tail_F_ssh']['p50'], '{:.3f}', ' s')})"
            f" | | p95 <= 0.2 s | {_ok(ll['podtune_logs_f']['p95']['median'] <= 0.2 and (not raw or raw['p95']['median'] <= 0.2))}"
            f" | p50 0.5 s, p95 0.95 s | followed as a stream: `tail -F` on the open SSH connection, by byte offset (328a06f) |")
        rows.append(
            f"| GPU billed after the work ends, laptop attached | {_mm(em['billed_after_done_attached_s'], '{:.2f}', ' s')}"
            f" | | emulator billing interval end - `pipeline_done` | <= 1 s"
            f" | {_ok(em['billed_after_done_attached_s']['max'] <= 1.0)} | 1.0-3.0 s"
            f" | stop asked at `pipeline_done` (01b3862); report fetched without Nagle's delays (ee68a5e), the stop"
            f" is one request, not a look and a request (13f527f); report, log, heartbeat and the secrets' deletion"
            f" in one command, not 26 SFTP requests: ~ms here, ~2.5 s less to a pod 100 ms away (36d4797) |")
        rows.append(
            f"| GPU billed after the work ends, laptop killed | {_mm(em['billed_after_done_killed_s'], '{:.2f}', ' s')}"
            f" | | same, the pod's watchdog stops it | <= 2 s | {_ok(em['billed_after_done_killed_s']['max'] <= 2.0)}"
            f" | not measured (watchdog waited for the exit code after a 3.1 s teardown) | watchdog ends at"
            f" `pipeline_done`; pipeline skips teardown (01b3862) |")
        rows.append(
            f"| warm run -> first training step, emulator | {_mm(em['first_step_s'], '{:.1f}', ' s')}"
            f" | pod-side import + load, from its Python's start {_mm(em['pod_import_load_s'], '{:.1f}', ' s')} (imports"
            f" {_mm(em['pod_import_s'], '{:.1f}', ' s')}) | control plane to launch"
            f" {_mm(em['control_plane_to_launch_s'], '{:.1f}', ' s')} | <= 8 s | {_ok(em['first_step_s']['median'] <= 8)}"
            f"{_straddle(em['first_step_s'], 8)}"
            f" | 14.5 s | one-trip sync (9ed74a2); SSH wait looks after 0.05 s (8b489f7); plan's look-ups now counted in its phase"
            f" (cba7620); paramiko imported while the pod boots (58fd9dd), SFTP opened ahead (7b73a7c), pod's package"
            f" check (20652c9); warm start: imports begin right after connect, not at launch (51ef10b); TCP_NODELAY"
            f" (ee68a5e), one request to resume (13f527f), one connection to find and use sshd (243e287) |")
    e = r.get("estimate")
    if e:
        est = e["estimate"]
        rows.append(
            f"| plan vs run, training time, tiny recipe ({e['repeats']} fresh homes) | {_mm(e['train_seconds_runs'], '{:.2f}', ' s')}"
            f" measured | {est['train_seconds']:.2f} s planned ({est['tokens_per_s']:,.0f} tok/s probed)"
            f" | {_mm(e['train_error_runs'], '{:+.0%}')} | within +-15 %"
            f" | {_ok(max(abs(e['train_error_runs']['min']), abs(e['train_error_runs']['max'])) <= 0.15)}"
            f" | -21 % | the CPU plan probes this machine, cached (cba7620); 24 steps, mean of the steps without a"
            f" checkpoint (46fecb9) |")
        rows.append(
            f"| plan vs run, whole run after the plan | {_mm(e['total_s_runs'], '{:.1f}', ' s')} measured"
            f" | {est['total_s']:.1f} s planned | {_mm(e['total_error_runs'], '{:+.0%}')} | within +-15 %"
            f" | {_ok(max(abs(e['total_error_runs']['min']), abs(e['total_error_runs']['max'])) <= 0.15)}"
            f" | -30 % | probe's fixed costs (cba7620), local table's sync/stop (808ce14), stop_s 0.2 s (c9d3ed1) |")
    s = r.get("sync")
    if s:
        rows.append(
            f"| sync cold, {s['files']} files / {s['bytes'] / 1e6:.1f} MB | {_mm(s['podtune_cold'], '{:.2f}', ' s')}"
            f" | `rsync -az` {_mm(s['rsync_cold'], '{:.2f}', ' s')} | {_mm(s['ratio_cold_pairs'])}x (medians"
            f" {s['ratio_cold']:.2f}x) | <= 1.0x | {_ok(s['ratio_cold'] <= 1.0)} | 1.25-1.5x"
            f" | manifest and upload in one SSH round trip, streamed gzip 1 (9ed74a2); TCP_NODELAY: the handshake"
            f" and the manifest's stdin no longer wait for delayed ACKs (ee68a5e) |")
        rows.append(
            f"| sync unchanged | {_mm(s['podtune_warm'], '{:.2f}', ' s')} | `rsync -az` {_mm(s['rsync_warm'], '{:.2f}', ' s')}"
            f" | {_mm(s['ratio_warm_pairs'])}x (medians {s['ratio_warm']:.2f}x) | <= 0.8x | {_ok(s['ratio_warm'] <= 0.8)}"
            f" | 0.90x | unchanged files known by size + mtime, hashing only the rest (b78f487) |")
    h = r.get("ssh")
    if h:
        cells = "; ".join(f"{label} {_mm(h[k]['ms']['no_delay'], '{:.1f}', ' ms')} vs {_mm(h[k]['ms']['nagle'], '{:.1f}', ' ms')}"
                          for k, label in (("handshake", "handshake"), ("command_stdin", "a command sent stdin"),
                                           ("command", "a command without"), ("sftp_read", "an SFTP read")))
        rows.append(
            f"| SSH round trips to a pod's sshd on loopback ({h['repeats']} alternating): TCP_NODELAY vs Nagle on"
            f" (paramiko's default) | {cells} | | handshake {h['handshake']['ratio']:.2f}x, command with stdin"
            f" {h['command_stdin']['ratio']:.2f}x | (feeds the rows above) | - | every command sent stdin or EOF"
            f" after its request waited for the delayed ACK | TCP_NODELAY on the pod connection (ee68a5e) |")
    c = r.get("setup")
    if c and "seconds" in c:
        rows.append(
            f"| cold setup on an image without the libraries (a venv holding only torch; PyPI, no pip cache; one run)"
            f" | `new venv: {c['seconds']:.0f} s, {c['downloaded_mb']:,.0f} MB downloaded`; {c['lines']} lines on screen,"
            f" the first after {c['first_line_s']:.2f} s, the longest silence {c['longest_silence_s']:.1f} s | |"
            f" | progress throughout; time and bytes | {_ok(c['longest_silence_s'] <= SILENCE_S)} (silence <= {SILENCE_S:g} s)"
            f" | ~100 s with nothing on screen; then 88 s and 3,135 MB side by side: pip replaced the image's torch"
            f" | setup streams pip over one channel (3b166da); the image's torch kept when its python is a venv, and"
            f" pinned (7c3a1e9) |")
    else:
        why = f"not measured in this run: {c['error']}" if c else "not measured in this run"
        rows.append(
            "| cold setup on an image without the libraries | pip's lines on screen as they come, a heartbeat with the"
            " venv's size every 5 s, then `new venv: N s, M MB downloaded` | | | progress throughout; time and bytes"
            f" | yes (tested: tests/unit/orchestrator/pod/test_pod_setup.py); {why}"
            " | ~100 s with nothing on screen | setup streams pip over one channel (3b166da) |")
    return rows


# pod_setup's heartbeat comes every 5 s while pip is quiet; a second of slack for the pipe.
SILENCE_S = 6.0
ALL = {"sync", "ssh", "train", "estimate", "pod", "setup"}


def render(r: dict, command: str) -> str:
    m = r["machine"]
    lines = [
        START,
        f"## CPU: this project's {m['cores']}-core machine (`make bench`, {r['when']}, {m['arch']}, Python {m['python']})",
        "",
        f"- **Command:** `{command}`"
        + (" (what `make bench` runs)" if command == "python bench/run_all.py" else " (`make bench` runs it with the default repeats)")
        + f"; raw results: `bench/results/{r['file']}`"
        " (every run's values, not only the medians).",
        f"- **Machine:** {m['cpu']}, {m['cores']} cores. Load before: `{r['load_before']}`; after: `{r['load_after']}`.",
        "- Each cell is the median (min-max) of the repeats; podtune and its baseline alternate in the same run.",
        "",
        *table(r),
        "",
        END,
    ]
    return "\n".join(lines)


def write_doc(r: dict, command: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    block = render(r, command)
    if START in text and END in text:
        before, rest = text.split(START, 1)
        _, after = rest.split(END, 1)
        text = before + block + after
    else:
        text = text + "\n" + block + "\n"
    DOC.write_text(text, encoding="utf-8")


def command_for(repeats: int, train_repeats: int) -> str:
    """The command line that measures with these repeats."""
    return "python bench/run_all.py" + (f" --repeats {repeats}" if repeats != 3 else "") + (
        f" --train-repeats {train_repeats}" if train_repeats != 5 else "")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--train-repeats", type=int, default=5)
    ap.add_argument("--only", default=",".join(sorted(ALL)))
    ap.add_argument("--no-write", action="store_true", help="print the table; leave BENCHMARKS.md alone")
    ap.add_argument("--render", metavar="RESULTS_JSON",
                    help="measure nothing: rewrite BENCHMARKS.md's table from a raw results file of an earlier run")
    args = ap.parse_args()
    if args.render:
        done = json.loads(Path(args.render).read_text())
        write_doc(done, done.get("command") or command_for(done["repeats"], done["train_repeats"]))
        print("\n".join(table(done)))
        return
    only = set(args.only.split(","))
    stamp = time.strftime("%Y-%m-%d-%H%M", time.gmtime())
    result: dict = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
                    "load_before": machine()["uptime"], "repeats": args.repeats, "train_repeats": args.train_repeats}
    started = time.time()
    if "sync" in only:
        result["sync"] = bench_sync.main(args.repeats)
    if "ssh" in only:
        result["ssh"] = bench_ssh.main()
    if "train" in only:
        result["train"] = bench_train.main(args.train_repeats)
    if "estimate" in only:
        result["estimate"] = bench_estimate.main(args.repeats)
    if "pod" in only:
        result["pod"] = bench_pod.main(args.repeats)
    if "setup" in only:  # last: it downloads from PyPI, and a failure there must not cost the rows above
        try:
            result["setup"] = bench_setup.main()
        except Exception as exc:  # noqa: BLE001 - the row says why
            result["setup"] = {"error": f"{exc.__class__.__name__}: {exc}"[:300]}
    result["seconds"] = round(time.time() - started, 1)
    result["load_after"] = machine()["uptime"]
    RESULTS.mkdir(exist_ok=True)
    result["file"] = f"cpu-{stamp}.json"
    command = result["command"] = command_for(args.repeats, args.train_repeats)
    for name in (result["file"], "latest.json"):
        (RESULTS / name).write_text(json.dumps(result, indent=1, default=str))
    print("\n".join(table(result)))
    if not args.no_write and only == ALL:
        write_doc(result, command)
        print(f"\nBENCHMARKS.md updated; raw results in bench/results/{result['file']}", file=sys.stderr)


if __name__ == "__main__":
    main()
