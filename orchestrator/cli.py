"""The `podtune` command line: parse, call, render. Work lives in run.py, manage.py, plan.py and costs.py.

Heavy or slow modules are imported inside commands so `podtune --help` answers at once (and never loads torch).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    add_completion=True, pretty_exceptions_enable=False, context_settings={"help_option_names": ["-h", "--help"]},
    help="Fine-tune open LLMs on rented GPUs from your laptop: plan, rent, train (QLoRA), merge, push, stop, report.",
    epilog="Exit codes: 0 ok; 1 something to fix outside the recipe (credentials, unknown run, renting declined); "
    "2 bad recipe, data or flag; 3 the job on the pod failed; 4 no GPU free; 130 interrupted. "
    "Shell completion: podtune --install-completion",
)
JsonOpt = typer.Option(False, "--json", help="Machine-readable JSON on stdout (messages go to stderr).")


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"podtune {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    # Plain `podtune` is a request for help, not a mistake: print it and exit 0.
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()

RecipeArg = typer.Argument(..., help="Recipe YAML file, e.g. recipes/tiny-cpu.yaml", show_default=False)
DataOpt = typer.Option(None, "--data", help="Local .json/.jsonl data file to train on, instead of the recipe's "
                       "dataset.source (a recipe may only name data in its own folder).", show_default=False)
RunArg = typer.Argument(None, help="Run id (or a unique prefix); default: the latest run", show_default=False)
RawOpt = typer.Option(False, "--raw", help="Show the trainer's own log lines instead of the live view.")
FetchYes = typer.Option(False, "--yes", "-y", help="Start a stopped pod briefly, without asking, to fetch its run's files.")


def _state():
    from .state import State

    return State()


def _ui(yes: bool = False, *, as_json: bool = False):
    from .ui import UI

    if as_json:  # stdout carries only the JSON; progress and warnings still reach the person on stderr
        from rich.console import Console

        return UI(Console(stderr=True, highlight=False), assume_yes=yes)
    return UI(assume_yes=yes)


def _print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=1, ensure_ascii=False, default=str) + "\n")


@app.command()
def run(
    recipe: Path = RecipeArg,
    provider: Optional[str] = typer.Option(None, "--provider", "-p", help="local | runpod | ssh (default: the recipe's)"),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before renting (for scripts)."),
    detach: bool = typer.Option(False, "--detach", "-d", help="Start the job and return; follow later with `podtune logs -f`."),
    connect_timeout: float = typer.Option(
        600, "--connect-timeout", min=1, help="Seconds to wait for a new pod to accept SSH; then it is stopped."),
    data: Optional[Path] = DataOpt,
    raw: bool = RawOpt,
) -> None:
    """Run a recipe end to end: plan, provision, sync, train, merge, push, stop, report.

    Example: podtune run recipes/tiny-cpu.yaml
    """
    from .run import Runner, RunOptions

    state = _state()
    opts = RunOptions(provider=provider, data=data, yes=yes, detach=detach, connect_timeout_s=connect_timeout, raw=raw)
    Runner(state, _ui(yes)).run(recipe, opts)


@app.command()
def plan(
    recipe: Path = RecipeArg,
    provider: Optional[str] = typer.Option(None, "--provider", "-p", help="local | runpod | ssh"),
    data: Optional[Path] = DataOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Show what a recipe would rent and cost, which local files it uploads, and check Hub access; rents nothing.

    Example: podtune plan recipes/llama2-ko.yaml
    """
    from .credentials import require
    from .planning.plan import make_plan
    from .providers import get_provider
    from .run import load_recipe_or_fail, resolve_data
    from .secrets import hf_token

    parsed, data_files = resolve_data(load_recipe_or_fail(recipe), recipe, data)
    require(parsed, provider or parsed.compute.provider)
    chosen = get_provider(provider or parsed.compute.provider, parsed)
    made = make_plan(parsed, chosen, data_files=data_files, token=hf_token(),
                     say=(lambda line: print(line, file=sys.stderr)) if as_json else _ui().info)
    if as_json:
        _print_json(made.as_dict())
    else:
        _ui().plan(made)


@app.command()
def validate(recipes: list[Path] = typer.Argument(..., help="One or more recipe files")) -> None:
    """Check recipe files against the schema; name every bad field.

    Example: podtune validate recipes/*.yaml
    """
    from .errors import ExitCode, PodtuneError
    from .run import load_recipe_or_fail, local_data_files

    ui, bad = _ui(), 0
    for path in recipes:  # every file is checked and reported, so one run lists all that needs fixing
        try:
            parsed = load_recipe_or_fail(path)
            local_data_files(parsed, path)
        except PodtuneError as exc:
            bad += 1
            if not exc.message.startswith(str(path)):  # a data problem: say which recipe it belongs to
                exc.message = f"{path}: {exc.message}"
            ui.error(exc)
            continue
        ui.info(f"{path}: ok ({parsed.name})")
    if bad:
        ui.error(f"{bad} of {len(recipes)} recipe(s) have problems")
        raise typer.Exit(int(ExitCode.CONFIG))


@app.command()
def schema(
    markdown: bool = typer.Option(False, "--markdown", help="A readable reference (docs/recipe.md) instead of JSON."),
) -> None:
    """Print the recipe JSON Schema for editors, or with --markdown a reference of every field and its default."""
    if markdown:
        from .schema_doc import markdown as reference

        sys.stdout.write(reference())
        return
    from remote.recipe import Recipe

    typer.echo(json.dumps(Recipe.model_json_schema(), indent=2, ensure_ascii=False))


@app.command()
def logs(
    run_id: Optional[str] = RunArg,
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep following until the job ends."),
    yes: bool = FetchYes,
    raw: bool = RawOpt,
) -> None:
    """Show the pod's training log; with -f, follow the run live (a dropped connection resumes where it stopped).

    Example: podtune logs -f
    """
    from . import manage

    manage.logs(_state(), _ui(), run_id, follow=follow, yes=yes, raw=raw)


@app.command()
def status(run_id: Optional[str] = RunArg, yes: bool = FetchYes, as_json: bool = JsonOpt) -> None:
    """Where a run is: one state (and why it failed or stopped: error, exit code, last log lines), progress, last
    checkpoint, cost so far, what next."""
    from . import manage

    state = _state()
    info = manage.status(state, _ui(as_json=as_json), run_id, yes=yes, show=not as_json)
    if as_json:
        _print_json({**info, "phases": state.phases(info["run_id"])})


@app.command()
def attach(run_id: Optional[str] = RunArg, yes: bool = FetchYes, raw: bool = RawOpt) -> None:
    """Follow a detached run to its end, then stop the pod and report (what `run` does after launch)."""
    from .manage import pick_run
    from .run import Runner, RunOptions

    state = _state()
    Runner(state, _ui()).attach(pick_run(state, run_id).id, RunOptions(yes=yes, raw=raw))


@app.command()
def resume(
    run_id: Optional[str] = RunArg,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before restarting the pod."),
    raw: bool = RawOpt,
) -> None:
    """Continue a stopped or failed run from its last checkpoint on the pod's volume, to the same final step;
    then merge, push, stop and report as usual.

    Example: podtune resume llama2-ko-20261123-1412
    """
    from .manage import pick_run
    from .run import Runner, RunOptions

    state = _state()
    Runner(state, _ui(yes)).resume(pick_run(state, run_id).id, RunOptions(yes=yes, raw=raw))


@app.command()
def stop(
    run_id: Optional[str] = RunArg,
    terminate: bool = typer.Option(False, "--terminate", help="Delete the pod and its volume (asks first)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before terminating."),
    pod: Optional[str] = typer.Option(None, "--pod", help="Act on this pod id instead of a run's pod."),
) -> None:
    """Stop a run's job and its pod now; the volume is kept unless --terminate.

    Example: podtune stop --terminate
    """
    from . import manage

    if pod:
        manage.stop_pod_by_id(_state(), _ui(yes), pod, terminate=terminate, yes=yes)
    else:
        manage.stop(_state(), _ui(yes), run_id, terminate=terminate, yes=yes)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def ssh(ctx: typer.Context, run_id: Optional[str] = RunArg) -> None:
    """Open a shell on a run's pod (host key checked); anything after `--` runs as a command there.

    Example: podtune ssh llama2-ko -- nvidia-smi
    """
    from . import manage

    argv = manage.ssh_command(_state(), _ui(), run_id, list(ctx.args))
    sys.stdout.flush()
    os.execvp(argv[0], argv)


@app.command()
def push(
    run_id: Optional[str] = RunArg,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before restarting a stopped pod."),
    raw: bool = RawOpt,
) -> None:
    """Push a finished run's model to the Hub again (restarts its pod if stopped, after asking; never retrains).

    Example: podtune push llama2-ko-20261123-1412
    """
    from .manage import pick_run
    from .run import Runner, RunOptions

    state = _state()
    Runner(state, _ui(yes)).push_again(pick_run(state, run_id).id, RunOptions(yes=yes, raw=raw))


@app.command()
def report(run_id: Optional[str] = RunArg, as_json: bool = JsonOpt) -> None:
    """Show a past run's report again: cost and time per phase, loss curve, sample answers, next steps.

    Example: podtune report llama2-ko-20261123-1412
    """
    from .manage import pick_run
    from .paths import local_run_dir
    from dataclasses import replace

    from .report import RunSummary, add_loss_plot, build_summary

    state = _state()
    run = pick_run(state, run_id)
    # A run that never finished has no stored summary: it is built now, with the status it has.
    summary = (RunSummary.from_dict(run.summary) if run.summary
               else replace(build_summary(state, run.id), status=run.status))
    if summary.loss_curve and not Path(summary.loss_png or "").is_file():
        summary = add_loss_plot(summary, local_run_dir(run.id))
    if as_json:
        _print_json(summary.as_dict())
    else:
        _ui().report(summary)


@app.command()
def runs(as_json: bool = JsonOpt) -> None:
    """List runs with their status and cost."""
    state = _state()
    if as_json:
        keep = ("id", "recipe_name", "provider", "status", "phase", "pod_id", "created_at", "ended_at", "message")
        _print_json([{**{k: getattr(r, k) for k in keep},
                      "cost_usd": ((r.summary or {}).get("cost") or {}).get("total_usd")} for r in state.list_runs()])
        return
    _ui().runs(state.list_runs())


@app.command()
def costs(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    as_csv: bool = typer.Option(False, "--csv", help="CSV output, one row per run."),
    reconcile: bool = typer.Option(False, "--reconcile",
                                   help="Beside podtune's meter, the provider's own bill per pod (RunPod billing API)."),
) -> None:
    """What each run cost (GPU and storage, per phase), per month and in total, and what still accrues.

    Example: podtune costs --csv > costs.csv
    """
    from . import costs as costs_module

    if reconcile:
        costs_module.show_reconcile(_state(), _ui(), as_json=as_json)
        return
    costs_module.show(_state(), _ui(), as_json=as_json, as_csv=as_csv)


@app.command()
def doctor(
    recipe: Optional[Path] = typer.Argument(None, help="Also check what this recipe needs (its provider, Hub repo, ssh host).",
                                            show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Check every credential and tool podtune uses, say how to fix each; exit 1 if a required check fails.

    Example: podtune doctor recipes/llama2-ko.yaml
    """
    from . import doctor as doctor_module

    if not doctor_module.main(recipe, as_json=as_json, console=_ui().console):
        raise typer.Exit(1)


@app.command()
def init(
    path: Path = typer.Argument(Path("recipe.yaml"), help="Where to write the recipe (never overwritten)."),
    base: Optional[str] = typer.Option(None, "--base", help="Base model: a Hub id or builtin:tiny-llama."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Hub dataset id or a local .json/.jsonl file."),
    fmt: Optional[str] = typer.Option(None, "--format", help="alpaca | text | chat"),
    hub_repo: Optional[str] = typer.Option(None, "--hub-repo", help="Hub repo to push to (user/name)."),
    provider: Optional[str] = typer.Option(None, "--provider", help="local | runpod | ssh"),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="RunPod GPU type, e.g. 'NVIDIA GeForce RTX 3090'."),
) -> None:
    """Write a commented starter recipe; on a terminal without --dataset, ask a few questions instead.

    Example: podtune init llama2-ko.yaml --base meta-llama/Llama-2-7b-hf --dataset heegyu/open-korean-instructions
    --format text --hub-repo you/llama2-ko --gpu 'NVIDIA GeForce RTX 3090'
    """
    from . import starter

    answers = starter.Answers(base=base or starter.BUILTIN_TINY, dataset=dataset or "", format=fmt or "alpaca",
                              hub_repo=hub_repo, provider=provider, gpu=gpu)
    starter.main(path, answers, _ui(), ask=dataset is None and sys.stdin.isatty())


def main() -> None:
    """Entry point: a PodtuneError becomes a message, a hint and a named exit code; never a traceback.

    Typer's standalone mode handles the rest itself: usage errors (exit 2 with the usage line), --help, and
    Ctrl-C (exit 130). It raises the vendored click's exceptions, which the click package cannot catch here."""
    try:
        _main()
    except SystemExit as exc:
        _leave(exc.code)
    _leave(0)


def _main() -> None:
    from .errors import ExitCode, PodtuneError

    try:
        app()
    except PodtuneError as exc:
        from .secrets import redact

        from rich.console import Console

        err = Console(stderr=True)
        err.print(f"error: {redact(exc.message)}", style="red", markup=False, highlight=False)
        if exc.hint:
            err.print(f"hint: {redact(exc.hint)}", markup=False, highlight=False)
        if os.environ.get("PODTUNE_DEBUG"):
            raise
        sys.exit(int(exc.exit_code))
    except KeyboardInterrupt:  # one that arrives outside a command (typer turns the rest into exit 130)
        print("interrupted", file=sys.stderr)
        sys.exit(int(ExitCode.INTERRUPTED))


def _leave(code: object) -> None:
    """Exit as sys.exit(code) would, without the interpreter's teardown of every loaded module: after a run,
    freeing matplotlib's and paramiko's objects took 0.2-0.4 s once the report was already on the screen. Every
    state write is committed by then, the only thread is a daemon, and atexit handlers still run."""
    import atexit

    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): the message goes to stderr, status 1
        print(code, file=sys.stderr)
        status = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe (`podtune ... | head`): nothing more can be said
        pass
    atexit._run_exitfuncs()
    os._exit(status)
