"""The W&B key file on the pod: read once and removed at once; on several GPUs kept only until the ranks trained."""

from __future__ import annotations

from pathlib import Path

from remote import download, pipeline
from remote.events import RunPaths, read_events
from tests.recipes import write_recipe_variant

KEY = "wandbCANARYpipeline0123456789abcdef01234"


def _run_dir(tmp_path: Path, gpus: int) -> tuple[Path, Path]:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    several = {"compute.gpu_count": gpus, "training.distributed": "ddp"} if gpus > 1 else {}
    write_recipe_variant(RunPaths(run_dir).recipe, {"training.report_to": ["wandb"], **several})
    key_file = tmp_path / "secrets" / "run.wandb_key"
    key_file.parent.mkdir(mode=0o700)
    key_file.write_text(KEY)
    return run_dir, key_file


def test_one_gpu_the_key_file_is_gone_before_any_phase(tmp_path, monkeypatch):
    run_dir, key_file = _run_dir(tmp_path, 1)
    seen = {}

    def fake_train(run_dir, recipe, log, *, model_dir, token, wandb_key=None):
        seen.update(key=wandb_key, file_there=key_file.exists())
        return {"interrupted": False}

    monkeypatch.setattr(download, "ensure_base_model", lambda recipe, token: tmp_path)
    import remote.train

    monkeypatch.setattr(remote.train, "run", fake_train)
    assert pipeline.run(run_dir, None, ("train",), wandb_key_file=str(key_file)) == 0
    assert seen == {"key": KEY, "file_there": False} and not key_file.exists()
    assert KEY not in (run_dir / "events.jsonl").read_text()


def test_several_gpus_the_ranks_get_the_file_and_it_goes_after_the_train_phase(tmp_path, monkeypatch):
    run_dir, key_file = _run_dir(tmp_path, 2)
    seen = {}

    def fake_distributed(run_dir, recipe, model_dir, token_file, wandb_key_file=None):
        seen.update(path=wandb_key_file, file_there=Path(wandb_key_file).exists())
        return {"interrupted": False}

    monkeypatch.setattr(download, "ensure_base_model", lambda recipe, token: tmp_path)
    monkeypatch.setattr(pipeline, "_train_distributed", fake_distributed)
    assert pipeline.run(run_dir, None, ("train",), wandb_key_file=str(key_file)) == 0
    assert seen == {"path": str(key_file), "file_there": True} and not key_file.exists()
    events, _ = read_events(run_dir / "events.jsonl")
    assert [e["kind"] for e in events][-1] == "pipeline_done"


def test_torchrun_ranks_get_the_key_files_path_never_the_key():
    from remote.distributed import command

    cmd = command(Path("/r"), Path("/m"), 2, None, "/dev/shm/podtune-secrets/x.wandb_key")
    assert cmd[-2:] == ["--wandb-key-file", "/dev/shm/podtune-secrets/x.wandb_key"]
    assert "--wandb-key-file" not in command(Path("/r"), Path("/m"), 2, None)


def test_a_library_logger_set_up_before_the_pipeline_writes_through_the_redactor(tmp_path, monkeypatch):
    """A warm start (remote/warm.py) imports transformers ahead of the job, and transformers gives its loggers a
    handler on the bare stderr at import: what it logs must still reach train.log masked."""
    import io
    import logging
    import sys

    bare = io.StringIO()
    monkeypatch.setattr(sys, "stderr", bare)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    library = logging.getLogger("podtune-test-library")
    handler = logging.StreamHandler()  # takes sys.stderr as it is now: the bare stream
    library.addHandler(handler)
    try:
        run_dir, key_file = _run_dir(tmp_path, 1)

        def fake_train(run_dir, recipe, log, *, model_dir, token, wandb_key=None):
            library.warning("logging in with %s", wandb_key)
            return {"interrupted": False}

        monkeypatch.setattr(download, "ensure_base_model", lambda recipe, token: tmp_path)
        import remote.train

        monkeypatch.setattr(remote.train, "run", fake_train)
        assert pipeline.run(run_dir, None, ("train",), wandb_key_file=str(key_file)) == 0
    finally:
        library.removeHandler(handler)
    assert "logging in with ***" in bare.getvalue() and KEY not in bare.getvalue()
