"""`make bench`: run every benchmark side by side and print a Markdown summary (copied into BENCHMARKS.md)."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import bench_estimate, bench_sync, bench_train  # noqa: E402  (after sys.path)


def main() -> None:
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    sync = bench_sync.main()
    train = bench_train.main()
    plan = bench_estimate.main()
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps({"when": started, "sync": sync, "train": train, "estimate": plan}, indent=1))
    m = sync["median_s"]
    print(f"## Results {started} ({platform.machine()}, {platform.python_version()})\n")
    print("| benchmark | podtune | baseline | ratio |")
    print("|---|---|---|---|")
    print(f"| sync cold, {sync['files']} files / {sync['bytes'] / 1e6:.1f} MB | {m['podtune_cold']:.2f} s | "
          f"rsync -az {m['rsync_cold']:.2f} s | {sync['ratio_cold']:.2f}x time |")
    print(f"| sync unchanged | {m['podtune_warm']:.2f} s | rsync -az {m['rsync_warm']:.2f} s | "
          f"{sync['ratio_warm']:.2f}x time |")
    t = train["tokens_per_s"]
    print(f"| QLoRA tiny Llama, 30 steps, CPU | {t['podtune']:,.0f} tok/s | raw trl {t['raw_trl']:,.0f} tok/s | "
          f"{train['ratio_podtune_over_raw']:.2f}x throughput |")
    r = train["peak_rss_mb"]
    print(f"| peak RSS during that | {r['podtune']:.0f} MB | {r['raw_trl']:.0f} MB | "
          f"{r['podtune'] / r['raw_trl']:.2f}x |")
    e, m = plan["estimate"], plan["median"]
    print(f"| tiny recipe: training time, plan vs run ({plan['repeats']} runs) | {m['train_seconds']:.2f} s measured | "
          f"{e['train_seconds']:.2f} s planned ({e['tokens_per_s']:,.0f} tok/s entry) | {plan['train_error']:+.0%} |")
    print(f"| tiny recipe: whole run, plan vs run | {m['total_s']:.1f} s measured | {e['total_s']:.1f} s planned | "
          f"{plan['total_error']:+.0%} |")


if __name__ == "__main__":
    main()
