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
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Fine-tune open LLMs on rented GPUs from your laptop: plan, rent, train (QLoRA), merge, push, stop, report.",
)

RecipeArg = typer.Argument(..., help="Recipe YAML file, e.g. recipes/tiny-cpu.yaml", show_default=False)
RunArg = typer.Argument(None, help="Run id (or a unique prefix); default: the latest run", show_default=False)
FetchYes = typer.Option(False, "--yes", "-y", help="Start a stopped pod briefly, without asking, to fetch its run's files.")


def _state():
    from .state import State

    return State()


def _ui(yes: bool = False):
    from .ui import UI

    return UI(assume_yes=yes)


@app.command()
def run(
    recipe: Path = RecipeArg,
    provider: Optional[str] = typer.Option(None, "--provider", "-p", help="local | runpod | ssh (default: the recipe's)"),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before renting (for scripts)."),
    detach: bool = typer.Option(False, "--detach", "-d", help="Start the job and return; follow later with `podtune logs -f`."),
    connect_timeout: float = typer.Option(
        600, "--connect-timeout", min=1, help="Seconds to wait for a new pod to accept SSH; then it is stopped."),
) -> None:
    """Run a recipe end to end: plan, provision, sync, train, merge, push, stop, report.

    Example: podtune run recipes/tiny-cpu.yaml
    """
    from .run import Runner, RunOptions

    state = _state()
    opts = RunOptions(provider=provider, yes=yes, detach=detach, connect_timeout_s=connect_timeout)
    Runner(state, _ui(yes)).run(recipe, opts)


@app.command()
def plan(
    recipe: Path = RecipeArg,
    provider: Optional[str] = typer.Option(None, "--provider", "-p", help="local | runpod | ssh"),
) -> None:
    """Show what a recipe would rent and cost, and check Hub access; rents nothing.

    Example: podtune plan recipes/llama2-ko.yaml
    """
    from .plan import make_plan
    from .providers import get_provider
    from .run import load_recipe_or_fail, local_data_files
    from .secrets import hf_token

    parsed = load_recipe_or_fail(recipe)
    chosen = get_provider(provider or parsed.compute.provider, parsed)
    _ui().plan(make_plan(parsed, chosen, data_files=local_data_files(parsed, recipe), token=hf_token()))


@app.command()
def validate(recipes: list[Path] = typer.Argument(..., help="One or more recipe files")) -> None:
    """Check recipe files against the schema; name every bad field.

    Example: podtune validate recipes/*.yaml
    """
    from .run import load_recipe_or_fail, local_data_files

    for path in recipes:
        parsed = load_recipe_or_fail(path)
        local_data_files(parsed, path)
        _ui().info(f"{path}: ok ({parsed.name})")


@app.command()
def schema() -> None:
    """Print the recipe JSON Schema (every field with its description)."""
    from remote.recipe import Recipe

    typer.echo(json.dumps(Recipe.model_json_schema(), indent=2, ensure_ascii=False))


@app.command()
def logs(
    run_id: Optional[str] = RunArg,
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep following until the job ends."),
    yes: bool = FetchYes,
) -> None:
    """Show the pod's training log; with -f, follow it (a dropped connection resumes where it stopped).

    Example: podtune logs -f
    """
    from . import manage

    manage.logs(_state(), _ui(), run_id, follow=follow, yes=yes)


@app.command()
def status(run_id: Optional[str] = RunArg, yes: bool = FetchYes) -> None:
    """Where a run is: phase, pod state, training progress; for an ended run why (error, exit code, last log lines)."""
    from . import manage

    manage.status(_state(), _ui(), run_id, yes=yes)


@app.command()
def attach(run_id: Optional[str] = RunArg, yes: bool = FetchYes) -> None:
    """Follow a detached run to its end, then stop the pod and report (what `run` does after launch)."""
    from .manage import pick_run
    from .run import Runner, RunOptions

    state = _state()
    Runner(state, _ui()).attach(pick_run(state, run_id).id, RunOptions(yes=yes))


@app.command()
def resume(
    run_id: Optional[str] = RunArg,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before restarting the pod."),
) -> None:
    """Continue a stopped or failed run from its last checkpoint on the pod's volume, to the same final step;
    then merge, push, stop and report as usual.

    Example: podtune resume llama2-ko-20261123-1412
    """
    from .manage import pick_run
    from .run import Runner, RunOptions

    state = _state()
    Runner(state, _ui(yes)).resume(pick_run(state, run_id).id, RunOptions(yes=yes))


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
def push(run_id: Optional[str] = RunArg) -> None:
    """Push a finished run's model to the Hub again (restarts its pod if stopped; never retrains).

    Example: podtune push llama2-ko-20261123-1412
    """
    from .manage import pick_run
    from .run import Runner, RunOptions

    state = _state()
    Runner(state, _ui()).push_again(pick_run(state, run_id).id, RunOptions())


@app.command()
def runs() -> None:
    """List runs with their status and cost."""
    state = _state()
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


def main() -> None:
    """Entry point: a PodtuneError becomes a message, a hint and a named exit code; never a traceback.

    Typer's standalone mode handles the rest itself: usage errors (exit 2 with the usage line), --help, and
    Ctrl-C (exit 130). It raises the vendored click's exceptions, which the click package cannot catch here."""
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
