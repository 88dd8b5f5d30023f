"""Callbacks (issue 26, part 3): every hook of every algorithm's loop, a stop from any of them ending
the run as its last step would, the user's own scalars, and a callback that raises keeping the work."""

import shutil

import numpy as np
import pytest

import tfrl
from tfrl.checkpoint import Checkpointer
from tfrl.errors import CallbackFailed, ConfigError, StorageError
from tfrl.export import load_policy
from tfrl.logger import read_jsonl
from tfrl.training import RunSettings

SHORT = dict(eval_episodes=2, progress=False)


class Recorder(tfrl.Callback):
    """Every hook call, in order, and a stop at ``stop_at`` env steps (from ``on_update``)."""

    def __init__(self, stop_at=None):
        self.calls, self.stop_at = [], stop_at

    def on_training_start(self, run):
        self.calls.append(("start", run.step))

    def on_update(self, run, metrics):
        self.calls.append(("update", run.step))
        if self.stop_at is not None and run.step >= self.stop_at:
            run.stop(f"enough at {run.step}")

    def on_episode(self, run, episode_return, length):
        self.calls.append(("episode", run.step, episode_return, length))
        run.log("episode_length_squared", length**2)

    def on_evaluation(self, run, returns, is_best):
        self.calls.append(("evaluation", run.step, float(np.mean(returns)), is_best))

    def on_checkpoint(self, run, step):
        self.calls.append(("checkpoint", step))

    def on_training_end(self, run):
        self.calls.append(("end", run.step, run.export_path))

    def of(self, kind):
        return [call[1:] for call in self.calls if call[0] == kind]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    root = tmp_path_factory.mktemp("callbacks")
    recorder = Recorder()
    options = dict(total_steps=2_000, eval_every=500, checkpoint_every=1_000, logdir=root / "runs")
    result = tfrl.train("dqn", "CartPole-v1", export_dir=root / "exports", callbacks=[recorder], **options, **SHORT)
    return recorder, result


def test_each_hook_is_called_at_its_point_of_the_run(recorded):
    recorder, result = recorded
    assert recorder.calls[0] == ("start", 0) and recorder.calls[-1] == ("end", 2_000, result.export_path)
    episodes = read_jsonl(result.run_dir / "episodes.jsonl")
    assert [(step, ret, length) for step, ret, length in recorder.of("episode")] == [
        (row["step"], row["return"], row["length"]) for row in episodes
    ]
    evaluations = read_jsonl(result.run_dir / "evaluations.jsonl")
    assert [(step, mean) for step, mean, _ in recorder.of("evaluation")] == [
        (row["step"], row["mean"]) for row in evaluations
    ]
    assert recorder.of("evaluation")[0][-1] is True  # the first evaluation is the best so far
    assert [step for (step,) in recorder.of("checkpoint")] == [1_000, 2_000]  # 2,000: the last, written once
    assert len(recorder.of("update")) == 2_000 // 4  # one per vector step of the 4 envs


def test_a_callback_logs_its_own_scalars_beside_tfrl_s(recorded):
    _recorder, result = recorded
    rows = read_jsonl(result.run_dir / "scalars.jsonl")
    episodes = read_jsonl(result.run_dir / "episodes.jsonl")
    assert [(row["name"], row["value"]) for row in rows] == [
        ("episode_length_squared", float(row["length"] ** 2)) for row in episodes
    ]
    events = list((result.run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert events and b"custom/episode_length_squared" in events[0].read_bytes()


@pytest.mark.parametrize("algorithm", ["dqn", "a3c"])
def test_a_stop_from_a_callback_ends_the_run_there_with_a_checkpoint_and_the_export(algorithm, tmp_path):
    recorder = Recorder(stop_at=1_000)
    result = tfrl.train(
        algorithm,
        "CartPole-v1",
        total_steps=50_000,
        eval_every=10_000,
        logdir=tmp_path / "runs",
        export_dir=tmp_path / "exports",
        callbacks=[recorder],
        **SHORT,
    )
    batch = 4 if algorithm == "dqn" else 2_000  # A3C yields one worker's whole update at a time
    assert 1_000 <= result.env_steps < 1_000 + batch
    assert result.stopped_by == f"enough at {result.env_steps}"
    assert recorder.of("evaluation")[-1][0] == result.env_steps  # the policy it stopped with was scored
    assert Checkpointer(result.run_dir / "checkpoints", result.agent).steps()[0] == result.env_steps
    assert load_policy(result.export_path).metadata["evaluation"]["mean_return"] == result.best_return


def test_built_in_stops(tmp_path):
    options = dict(total_steps=30_000, eval_every=500, logdir=tmp_path / "runs", export=False, **SHORT)
    reached = tfrl.train("dqn", "CartPole-v1", callbacks=[tfrl.StopAtReturn(9.0)], **options)
    assert reached.env_steps == 500 and reached.stopped_by.startswith("StopAtReturn: evaluation mean")
    patience = tfrl.StopWhenNoImprovement(2)
    stalled = tfrl.train("dqn", "CartPole-v1", callbacks=[patience], **options)
    evaluations = read_jsonl(stalled.run_dir / "evaluations.jsonl")
    best_at = int(np.argmax([row["mean"] for row in evaluations]))
    assert stalled.stopped_by.startswith("StopWhenNoImprovement: 2 evaluations without beating")
    assert len(evaluations) == best_at + 3  # the best, then two that did not beat it


def test_a_callback_that_raises_keeps_the_work_and_says_how_to_resume(tmp_path):
    class Broken(tfrl.Callback):
        def on_evaluation(self, run, returns, is_best):
            if run.step >= 1_000:
                raise KeyError("my_metric")

    with pytest.raises(CallbackFailed) as stopped:
        tfrl.train(
            "dqn",
            "CartPole-v1",
            total_steps=5_000,
            eval_every=500,
            logdir=tmp_path / "runs",
            export_dir=tmp_path / "exports",
            callbacks=[Broken()],
            **SHORT,
        )
    first_line = str(stopped.value).splitlines()[0]
    run_dir = next((tmp_path / "runs").iterdir())
    assert "the callback Broken.on_evaluation raised KeyError: 'my_metric' at env step 1000" in first_line
    assert "a checkpoint at step 1000" in first_line and f"tfrl train --resume {run_dir}" in first_line
    assert load_policy(tmp_path / "exports" / "dqn-CartPole-v1").metadata["evaluation"]["env_step"] in (500, 1000)


class BrokenAfterFirstEvaluation(tfrl.Callback):
    def on_evaluation(self, run, returns, is_best):
        if run.step >= 1_000:
            raise KeyError("my_metric")


def test_a_second_failure_while_exporting_on_the_way_out_is_reported_beside_the_first(tmp_path, monkeypatch):
    choose, calls = RunSettings.choose_export_name, []

    def disk_full_on_the_way_out(self, run_dir):  # the run's start chooses its export name as usual
        calls.append(run_dir)
        if len(calls) > 1:
            raise StorageError(f"no space left on the device holding {run_dir}")
        return choose(self, run_dir)

    monkeypatch.setattr(RunSettings, "choose_export_name", disk_full_on_the_way_out)
    with pytest.raises(CallbackFailed) as stopped:
        tfrl.train(
            "dqn", "CartPole-v1", total_steps=5_000, eval_every=500, logdir=tmp_path / "runs",
            export_dir=tmp_path / "exports", callbacks=[BrokenAfterFirstEvaluation()], **SHORT,
        )  # fmt: skip
    first_line = str(stopped.value).splitlines()[0]
    assert first_line.startswith("the callback BrokenAfterFirstEvaluation.on_evaluation raised KeyError")
    assert "could not be exported (no space left on the device" in first_line and "tfrl export" in first_line


def test_a_run_that_exports_nothing_says_where_its_best_policy_is_when_it_stops(tmp_path):
    with pytest.raises(CallbackFailed) as stopped:
        tfrl.train(
            "dqn", "CartPole-v1", total_steps=5_000, eval_every=500, logdir=tmp_path / "runs", export=False,
            callbacks=[BrokenAfterFirstEvaluation()], **SHORT,
        )  # fmt: skip
    run_dir = next((tmp_path / "runs").iterdir())
    assert f"is in the checkpoint (this run exports nothing; tfrl export {run_dir} writes it)" in str(stopped.value)


def test_callbacks_that_are_not_callbacks_are_refused_before_any_file(tmp_path):
    with pytest.raises(ConfigError, match=r"callbacks must be tfrl\.Callback instances"):
        tfrl.train("dqn", "CartPole-v1", callbacks=[print], logdir=tmp_path)
    with pytest.raises(ConfigError, match="needs at least 1 evaluation"):
        tfrl.StopWhenNoImprovement(0)
    assert not any(tmp_path.iterdir())


def test_a_resume_cuts_the_callbacks_scalars_back_with_the_logs(recorded, tmp_path):
    _recorder, result = recorded
    run_dir = shutil.copytree(result.run_dir, tmp_path / "run")
    for path in (run_dir / "checkpoints").glob("*-2000.*"):
        path.unlink()  # the run is resumed from step 1,000: the rows after it are a lost tail
    tfrl.train(resume=run_dir, total_steps=1_200, export=False, callbacks=[Recorder()], progress=False)
    steps = [row["step"] for row in read_jsonl(run_dir / "scalars.jsonl")]
    assert steps == sorted(steps) and max(steps) <= 1_200
    assert [row["step"] for row in read_jsonl(run_dir / "episodes.jsonl")] == steps
