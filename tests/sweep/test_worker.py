"""A sweep worker in this process on a random search of the embedded model: it takes trials until
the sweep has none left, the sampler's draws within GRID's ranges, each run's whole log in its
folder, one line per finished trial, and its heartbeat file."""
import json
from pathlib import Path

from helpers.common.run import RunDir
from helpers.sweep.runs import plan_sweep
from helpers.sweep.study import read_heartbeat, storage, worker_record
from helpers.sweep.worker import run_worker
from tiny_sweep import tiny


def test_a_worker_trains_the_samplers_draws_until_none_is_left(tmp_path):
    import optuna
    cfg = tiny(tmp_path, search="random", num_samples=2, search_seed=1, max_steps_per_run=2, evals_per_run=1,
               grid={"learning_rate": {"log_uniform": [1e-4, 1e-2]}, "lora_r": [4, 8]})
    plan = plan_sweep(cfg, log=lambda *a: None)  # what run_sweep does before it starts workers
    lines: list[str] = []
    done = run_worker(plan.sweep_dir, log=lines.append)
    assert done == [0, 1]
    study = optuna.load_study(study_name="sweep", storage=storage(plan.sweep_dir))
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    for t, line in zip(study.trials, lines):
        p = t.user_attrs["params"]
        assert 1e-4 <= p["learning_rate"] <= 1e-2 and p["lora_r"] in (4, 8) and isinstance(p["lora_r"], int)
        assert t.params["lora_r"] == p["lora_r"]  # recorded by Optuna as suggested values
        run = RunDir(t.user_attrs["run_dir"])
        assert run.name.endswith(f"-t{t.number}") and json.loads(run.manifest_path.read_text())
        log = run.train_log.read_text()
        assert "Done:" in log and log.startswith("--- ")  # the whole training log, in the run's folder
        assert line.startswith(f"trial {t.number} (lr=") and ": done, validation loss" in line
        assert t.value == t.user_attrs["metrics"]["eval_loss"] and t.user_attrs["metrics"]["steps"] == 2
    beat = read_heartbeat(plan.sweep_dir, worker_record()["id"])
    assert beat["done"] is True and beat["trial"] is None and beat["worker"]["pid"] == worker_record()["pid"]
    assert run_worker(plan.sweep_dir, log=lines.append) == [] and len(lines) == 2  # nothing left: trains nothing
    assert Path(plan.sweep_dir / "sweep_config.json").exists()


def test_the_heartbeat_thread_keeps_beating_while_training_beats_too(tmp_path):
    import time
    from helpers.sweep.worker import Heartbeat
    me = worker_record()
    with Heartbeat(tmp_path, me, every=0.05) as hb:
        t0 = time.time()
        while time.time() - t0 < 1.5:  # training reports progress as fast as it can, from another thread
            hb.beat({"step": int((time.time() - t0) * 1000), "eval_loss": 1.0, "force": True})
            hb.start_trial({"trial": 1, "step": 0})
        time.sleep(0.3)
        assert hb.thread.is_alive()
        assert time.time() - read_heartbeat(tmp_path, me["id"])["time"] < 0.3
    assert read_heartbeat(tmp_path, me["id"])["done"] is True
