"""A3C on Ray: the pool on a local two-node cluster (one CPU each, on 127.0.0.1), learning, a killed
actor and a removed node replaced, the restart limit, ``--resume`` keeping the backend, the export,
the direct connection's challenge (replayed or forged answers refused unread) and its doorman (slow
clients never delay the driver), a local cluster listening on loopback only, and the setup errors
(Ray missing, a malformed address, no cluster at an address, Ray for an algorithm without workers).

One cluster serves the whole module: Ray takes seconds to start.
"""

import os

# Ray's switch to bind every node to the loopback address (what it does on macOS and Windows), so the
# test cluster stays on 127.0.0.1. Read when Ray is imported, and inherited by its nodes and workers.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

import contextlib
import json
import pickle
import re
import select
import socket
import struct
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import pool_workers  # noqa: E402
from pool_workers import Broken, Echo, RaisesOSError, ReportsQuiet, assert_runs_one_step_ahead, collect_until, from_each  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

import tfrl  # noqa: E402
from tfrl import cli  # noqa: E402
from tfrl.agents import make_config  # noqa: E402
from tfrl.errors import ConfigError, WorkerError  # noqa: E402
from tfrl.logger import read_jsonl  # noqa: E402
from tfrl.pools import (  # noqa: E402
    HELLO_DEADLINE_SECONDS,
    NONCE_BYTES,
    RAY_DIRECT_MAX_BYTES,
    RAY_INSTALL,
    SECRET_BYTES,
    RayDirectPool,
    RayPool,
    _answer,
    _receive_exactly,
    check_backend,
    make_pool,
)
from tfrl.training import GreedyActing, restore_run  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    """A head node and one more, one CPU each; the test process is the driver (on the head)."""
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1"})
    nodes.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    ray.init(address=nodes.address, logging_level="ERROR")
    ray.cloudpickle.register_pickle_by_value(pool_workers)  # Ray's workers cannot import tests/ by name
    yield nodes
    ray.shutdown()
    nodes.shutdown()


def _train(tmp_path: Path, steps: int, **overrides):
    return tfrl.train(
        "a3c",
        "CartPole-v1",
        seed=0,
        total_steps=steps,
        eval_every=max(steps // 2, 1),
        eval_episodes=5,
        overrides={"workers": 2, **overrides},
        backend="ray",
        logdir=tmp_path / "runs",
        export=False,
        progress=False,
    )


def _worker_pids() -> set[int]:
    """Processes of the pool's Ray actors on this machine (Ray titles them ray::_RayWorker…)."""
    pids = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmdline.read_bytes().startswith(b"ray::_RayWorker"):
                pids.add(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


def _once_training(tmp_path: Path, action) -> threading.Thread:
    """Run ``action(new actor pids)`` in a thread, as soon as the run under ``tmp_path`` logged an episode."""
    before = _worker_pids()

    def watch() -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            episodes = list(tmp_path.glob("runs/*/episodes.jsonl"))
            if episodes and episodes[0].stat().st_size > 0:
                action(sorted(_worker_pids() - before))
                return
            time.sleep(0.1)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _events(result) -> list[str]:
    return [row["message"] for row in read_jsonl(result.run_dir / "events.jsonl")]


# ------------------------------------------------------------------------------------------------
# The pool itself, with workers that need no TensorFlow.
# ------------------------------------------------------------------------------------------------


RAY_POOLS = [RayPool, RayDirectPool]


@pytest.mark.parametrize("ray_pool", RAY_POOLS)
def test_ray_workers_silence_tensorflow_only_when_the_driver_did(cluster, monkeypatch, ray_pool):
    monkeypatch.delitem(sys.modules, "tfrl.quiet", raising=False)
    with ray_pool(ReportsQuiet, ["loud"], np.ones(4, np.float32)) as pool:
        assert collect_until(pool, from_each(0))[0][1] is False
    monkeypatch.setitem(sys.modules, "tfrl.quiet", types.ModuleType("tfrl.quiet"))  # as the `tfrl` command
    with ray_pool(ReportsQuiet, ["quiet"], np.ones(4, np.float32)) as pool:
        assert collect_until(pool, from_each(0))[0][1] is True


@pytest.mark.parametrize("ray_pool", RAY_POOLS)
def test_a_pipelined_ray_pool_worker_runs_one_step_ahead(cluster, ray_pool):
    with ray_pool(Echo, ["a"], np.ones(4, np.float32), pipelined=True) as pool:
        assert_runs_one_step_ahead(pool)


@pytest.mark.parametrize("ray_pool", RAY_POOLS)
@pytest.mark.parametrize("pipelined", [False, True])  # pipelined, the dead actor's second step must not count twice
def test_ray_pool_steps_on_the_published_array_and_replaces_a_lost_worker(cluster, pipelined, ray_pool):
    events = []
    with ray_pool(
        Echo,
        ["a", "b"],
        np.ones(4, np.float32),
        max_restarts=1,
        pipelined=pipelined,
        on_event=events.append,
    ) as pool:
        first = dict(collect_until(pool, from_each(0, 1)))
        assert [first[0][0], first[1][0]] == ["a", "b"] and first[0][2] == 4.0
        pool.publish(np.full(4, 2.0, np.float32))
        collect_until(pool, from_each(0, 1, where=lambda message: message[2] == 8.0))  # each got the new array
        large = np.ones(RAY_DIRECT_MAX_BYTES // 4 + 1, np.float32)
        pool.publish(large)
        collect_until(pool, from_each(0, 1, where=lambda message: message[2] == large.size))
        pool.publish(np.full(4, 2.0, np.float32))
        collect_until(pool, from_each(0, 1, where=lambda message: message[2] == 8.0))
        victim = first[1][1]
        os.kill(victim, 9)
        replaced = collect_until(pool, from_each(1, where=lambda message: message[1] != victim))
        new = next(message for worker_id, message in replaced if worker_id == 1 and message[1] != victim)
        assert new[0] == "b" and new[2] == 8.0  # the same spec, starting from the array published last
        assert len(events) == 1 and events[0].startswith(f"worker 1 (pid {victim} on 127.0.0.1) died: ")
        assert "replaced it with a new one starting from the current weights (restart 1 of 1)" in events[0]
        os.kill(new[1], 9)
        with pytest.raises(WorkerError, match=r"worker 1 .* died: .*it was replaced 1 time"):
            collect_until(pool, lambda messages: False, timeout=30)


@pytest.mark.parametrize("ray_pool", RAY_POOLS)
@pytest.mark.parametrize(
    ("worker", "error"), [(Broken, "NoSuchEnv-v0"), (RaisesOSError, "level-3.map")], ids=["building", "stepping"]
)
def test_ray_pool_stops_at_once_when_a_worker_raises(cluster, ray_pool, worker, error):
    with (
        pytest.raises(WorkerError, match=rf"worker 0 raised an exception[\s\S]*{error}"),
        ray_pool(worker, [0], np.zeros(1, np.float32)) as pool,
    ):
        collect_until(pool, lambda messages: False)


def test_small_arrays_go_over_a_direct_connection_and_large_ones_through_the_object_store(cluster):
    small, large = np.ones(4, np.float32), np.ones(RAY_DIRECT_MAX_BYTES // 4 + 1, np.float32)
    direct, shared = make_pool("ray", Echo, ["a"], small), make_pool("ray", Echo, ["a"], large)
    direct.close()
    assert isinstance(direct, RayDirectPool) and isinstance(direct.latest, bytes)
    assert type(shared) is RayPool and isinstance(shared.latest, ray.ObjectRef)  # put once, shared per node


tripped: list[str] = []  # what unpickling a tripwire recorded


def _trip() -> tuple[str, str]:
    tripped.append("unpickled")
    return "result", "tripped"


class _Tripwire:
    """A message that records being unpickled (by the driver: this process)."""

    def __reduce__(self):
        return _trip, ()


TRIPWIRE = (lambda data: struct.pack("!i", len(data)) + data)(pickle.dumps(_Tripwire()))  # framed as Connection does


def _challenged(address: tuple[str, int]) -> tuple[socket.socket, bytes]:
    """A connection to the driver at ``address``, and the nonce it was challenged with."""
    sock = socket.create_connection(address, timeout=5)
    return sock, _receive_exactly(sock, NONCE_BYTES)


def test_a_direct_connection_answering_without_the_pools_secret_is_refused_and_the_worker_goes_on(cluster):
    with RayDirectPool(Echo, ["a"], np.ones(4, np.float32)) as pool:
        collect_until(pool, from_each(0))
        worker = pool.connections[0]
        intruder, nonce = _challenged(pool.address)
        with intruder:
            intruder.sendall(_answer(bytes(SECRET_BYTES), nonce, 0, pool.starts[0]) + TRIPWIRE)
            # the worker's steps go on (and are let go on) while the doorman takes and refuses the answer
            collect_until(pool, lambda messages: closed_unread(intruder))
        assert pool.connections[0] is worker and collect_until(pool, from_each(0))  # the worker goes on
    assert not tripped


@pytest.mark.parametrize("answer", ["recorded", "without the secret"])
def test_a_replayed_or_forged_answer_to_the_challenge_takes_no_slot_and_nothing_is_unpickled(cluster, answer):
    pool = RayDirectPool(Echo, ["a"], np.ones(4, np.float32))  # not entered: no actor takes slot 0
    pool.starts[0] = 1  # as while its first actor starts: the slot an intruder would take
    try:
        earlier, nonce = _challenged(pool.address)
        earlier.close()
        recorded = _answer(pool.secret, nonce, 0, 1)  # the right answer, as recorded off another connection
        intruder, nonce = _challenged(pool.address)
        with intruder:
            intruder.sendall(
                (recorded if answer == "recorded" else _answer(bytes(SECRET_BYTES), nonce, 0, 1)) + TRIPWIRE
            )
            deadline = time.monotonic() + HELLO_DEADLINE_SECONDS + 5
            while not closed_unread(intruder):
                assert time.monotonic() < deadline and not pool.results(timeout=0.1)
        assert pool.connections[0] is None and not tripped
        rightful, nonce = _challenged(pool.address)  # the control: a right answer is taken, then what it sends
        with rightful:
            rightful.sendall(_answer(pool.secret, nonce, 0, 1) + TRIPWIRE)
            assert collect_until(pool, lambda messages: messages) == [(0, "tripped")] and tripped
    finally:
        pool.close()
        tripped.clear()


def closed_unread(sock: socket.socket) -> bool:
    """Whether the other end closed ``sock``; fails the test if it sent anything (after a challenge) before."""
    if not select.select([sock], [], [], 0)[0]:
        return False
    try:
        sent = sock.recv(1)
    except ConnectionResetError:  # closed with something of ours unread
        return True
    assert sent == b"", "the driver answered a connection without the pool's secret"
    return True


def _trickle(sock: socket.socket, stop: threading.Event) -> None:
    """Send a byte a second on ``sock`` until ``stop`` or until it is closed."""
    while not stop.is_set():
        try:
            sock.send(b"x")
        except OSError:
            return
        stop.wait(1.0)


def test_a_silent_or_trickling_client_does_not_delay_the_driver_and_is_closed_at_the_hello_deadline(cluster):
    with RayDirectPool(Echo, ["a"], np.ones(4, np.float32)) as pool:
        collect_until(pool, from_each(0))
        (silent, _), (trickling, _) = (_challenged(pool.address) for _ in range(2))
        stop, began = threading.Event(), time.monotonic()
        threading.Thread(target=_trickle, args=(trickling, stop), daemon=True).start()
        closed: dict[str, float] = {}
        gaps, last = [], began
        while len(closed) < 2 and time.monotonic() - began < HELLO_DEADLINE_SECONDS + 5:
            arrived = pool.results(timeout=0.5)
            now = time.monotonic()
            if arrived:
                gaps.append(now - last)
                last = now
            for worker_id, _message in arrived:
                pool.go_on(worker_id)
            for name, sock in (("silent", silent), ("trickling", trickling)):
                if name not in closed and closed_unread(sock):
                    closed[name] = now - began
        stop.set()
        silent.close()
        trickling.close()
    assert len(gaps) > 100 and max(gaps) < 0.5, max(gaps)  # the driver's steps went on meanwhile
    assert closed.keys() == {"silent", "trickling"}, closed
    assert all(HELLO_DEADLINE_SECONDS - 0.5 < after < HELLO_DEADLINE_SECONDS + 2 for after in closed.values()), closed


def test_a_worker_that_cannot_reach_the_driver_stops_the_run_naming_the_address(cluster):
    pool = RayDirectPool(Echo, ["a"], np.ones(4, np.float32))
    with socket.socket() as probe:  # as if a firewall kept the workers out: a port where nothing answers
        probe.bind(("127.0.0.1", 0))
        pool.address = probe.getsockname()
    address = "{}:{}".format(*pool.address)
    with (
        pytest.raises(WorkerError, match=f"worker 0 raised an exception[\\s\\S]*cannot reach the driver at {address}"),
        pool,
    ):
        collect_until(pool, lambda messages: False)


# ------------------------------------------------------------------------------------------------
# A3C on the cluster.
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def learned(cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("ray-learns")
    return tfrl.train(
        "a3c",
        "CartPole-v1",
        seed=0,
        total_steps=30_000,
        eval_every=5_000,
        eval_episodes=10,
        overrides={"workers": 2},
        backend="ray",
        logdir=root / "runs",
        export_dir=root / "saved_models",
        progress=False,
    )


def test_a3c_on_two_nodes_clearly_learns_cartpole_and_records_the_cluster(learned):
    evaluations = read_jsonl(learned.run_dir / "evaluations.jsonl")
    assert max(row["mean"] for row in evaluations) >= 100, evaluations  # a random policy: about 22
    record = json.loads((learned.run_dir / "run.json").read_text())
    assert record["settings"]["backend"] == "ray"
    assert record["workers"]["backend"] == "ray" and record["workers"]["nodes"] == 2
    assert record["workers"]["cpus"] == 2 and record["workers"]["address"].startswith("127.0.0.1:")
    assert learned.agent.global_step == learned.env_steps // learned.agent.config.update_every
    assert not _events(learned)


def _python(script: str, cwd: Path, unset: str) -> subprocess.CompletedProcess:
    """``script`` run by a fresh Python in ``cwd`` without the environment variable ``unset``; it must succeed."""
    environment = {key: value for key, value in os.environ.items() if key != unset}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=cwd, env=environment)
    assert done.returncode == 0, done.stderr
    return done


def test_the_export_loads_without_tfrl_and_keeps_the_contract(learned, tmp_path):
    path = learned.export_path
    metadata = json.loads((path / "assets" / "tfrl.json").read_text())
    assert metadata["endpoints"] == ["action", "sample_action", "value"] and metadata["algorithm"] == "a3c"
    observations = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    np.save(tmp_path / "observations.npy", observations)
    script = (
        "import json, sys, numpy as np, tensorflow as tf\n"
        f"model = tf.saved_model.load({str(path)!r})\n"
        f"batch = tf.constant(np.load({str(tmp_path / 'observations.npy')!r}))\n"
        "actions = model.signatures['serving_default'](observation=batch)['action'].numpy().tolist()\n"
        "print(json.dumps([sorted(model.signatures), actions]))\n"
        "assert not any(name.startswith('tfrl') for name in sys.modules)\n"
    )
    done = _python(script, tmp_path, unset="PYTHONPATH")
    signatures, actions = json.loads(done.stdout.strip().splitlines()[-1])
    assert signatures == ["action", "sample_action", "serving_default", "value"]
    with learned.best.applied():  # the export is the best-evaluated policy, as with processes
        np.testing.assert_array_equal(actions, GreedyActing(learned.agent)(observations))
        expected = tfrl.evaluate(GreedyActing(learned.agent), "CartPole-v1", episodes=3, seed=5)
    np.testing.assert_array_equal(tfrl.evaluate(tfrl.load_policy(path), "CartPole-v1", episodes=3, seed=5), expected)


def test_a_killed_worker_actor_is_replaced_and_the_run_finishes(cluster, tmp_path):
    killed = []
    watcher = _once_training(tmp_path, lambda pids: (killed.append(pids[0]), os.kill(pids[0], 9)))
    result = _train(tmp_path, 6_000)
    watcher.join()
    assert killed and result.env_steps >= 6_000
    (event,) = _events(result)
    assert (
        event.startswith("A3C worker ") and f"(pid {killed[0]} on 127.0.0.1) died: its worker process has died" in event
    )
    assert "replaced it with a new one" in event


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_a_removed_node_is_replaced_and_the_run_finishes(cluster, tmp_path):
    cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")  # a third node, where the replacement can go
    removed = []

    def remove_a_node_with_a_worker(pids: list[int]) -> None:
        raylets = {node.all_processes["raylet"][0].process.pid: node for node in cluster.worker_nodes}
        node = next(raylets[_parent(pid)] for pid in pids if _parent(pid) in raylets)  # not the driver's head node
        cluster.remove_node(node)
        removed.append(node)

    watcher = _once_training(tmp_path, remove_a_node_with_a_worker)
    result = _train(tmp_path, 6_000)
    watcher.join()
    assert removed and removed[0] not in cluster.worker_nodes and result.env_steps >= 6_000
    (event,) = _events(result)
    assert "died: its node has died" in event and "replaced it with a new one" in event


def test_past_max_worker_restarts_the_run_stops_with_a_clear_error_a_checkpoint_and_resumes_on_ray(cluster, tmp_path):
    watcher = _once_training(tmp_path, lambda pids: os.kill(pids[0], 9))
    with pytest.raises(WorkerError, match=r"died: .*max_worker_restarts=0.*a checkpoint at step \d+ is in") as error:
        _train(tmp_path, 1_000_000, max_worker_restarts=0)
    watcher.join()
    assert "\n" not in str(error.value)
    run_dir = next((tmp_path / "runs").iterdir())
    _settings, agent, _best = restore_run(run_dir)
    assert agent.env_steps > 0

    resumed = tfrl.train(resume=run_dir, total_steps=agent.env_steps + 2_000, export=False, progress=False)
    assert resumed.env_steps >= agent.env_steps + 2_000
    record = json.loads((run_dir / "run.json").read_text())
    assert record["settings"]["backend"] == "ray" and record["workers"]["backend"] == "ray"


# ------------------------------------------------------------------------------------------------
# Setup errors: one line, within seconds, before any file is written.
# ------------------------------------------------------------------------------------------------


def _cli_error(capsys, tmp_path: Path, *arguments: str) -> str:
    started = time.monotonic()
    code = cli.main(["train", *arguments, "--env", "CartPole-v1", "--logdir", str(tmp_path), "--no-progress"])
    assert time.monotonic() - started < 15
    assert code == 2 and not list(tmp_path.iterdir())
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("tfrl: error: ")
    return line


def test_an_address_with_no_cluster_is_one_line_naming_it(capsys, tmp_path):
    with socket.socket() as probe:  # a port on this machine with nothing listening
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    line = _cli_error(capsys, tmp_path, "a3c", "--backend", "ray", "--ray-address", address)
    assert f"no Ray cluster answers at --ray-address {address}" in line


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1:abc", "127.0.0.1:0", "127.0.0.1:65536", ":6379", "127.0.0.1", "::1:6379", "local", "ray://h:x"],
)
def test_a_malformed_address_is_one_line_naming_it_and_the_valid_forms(capsys, tmp_path, address):
    line = _cli_error(capsys, tmp_path, "a3c", "--backend", "ray", "--ray-address", address)
    assert f"--ray-address {address} is not a Ray cluster's address: give HOST:PORT (a port in 1-65535" in line
    assert "ray://HOST:PORT or auto" in line


def test_ray_for_an_algorithm_without_workers_is_refused(capsys, tmp_path):
    line = _cli_error(capsys, tmp_path, "dqn", "--backend", "ray")
    assert "--backend ray runs the workers of A3C" in line and "dqn" in line


def test_ray_missing_is_one_line_naming_the_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without Ray sees
    with pytest.raises(ConfigError, match=re.escape(f"install it with: {RAY_INSTALL}")):
        check_backend("ray")
    assert RAY_INSTALL in _cli_error(capsys, tmp_path, "a3c", "--backend", "ray")


def test_a_local_cluster_starts_without_rays_notice_on_how_to_opt_out_of_its_security(tmp_path):
    script = (
        "import tfrl.quiet\n"
        "from tfrl.pools import cluster\n"
        "with cluster('ray') as where:\n"
        "    print(where['backend'], where['nodes'])\n"
    )
    done = _python(script, tmp_path, unset="RAY_AUTH_MODE")
    assert done.stdout.split() == ["ray", "1"]
    assert "Token authentication" not in done.stderr, done.stderr


def _tree(root: int) -> set[int]:
    """``root`` and every process descended from it (Ray's GCS, raylet, agents and workers of a local cluster)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    pids: set[int] = set()
    new = {root}
    while new:
        pids |= new
        new = {pid for pid, parent in parents.items() if parent in new} - pids
    return pids


def _listening_addresses() -> dict[int, str]:
    """Socket inode → ``host`` of every listening TCP socket on this machine, from /proc/net/tcp{,6}."""
    found = {}
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                host = fields[1].split(":")[0]
                raw = b"".join(struct.pack("<I", int(host[i : i + 8], 16)) for i in range(0, len(host), 8))
                found[int(fields[9])] = socket.inet_ntop(family, raw)
    return found


def _listening(pids: set[int]) -> list[tuple[int, str, str]]:
    """``(pid, program, host)`` of each listening TCP socket that one of ``pids`` holds."""
    hosts, held = _listening_addresses(), []
    for pid in pids:
        with contextlib.suppress(OSError):
            program = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:[") and int(link[8:-1]) in hosts:
                    held.append((pid, program, hosts[int(link[8:-1])]))
    return held


def test_a_local_cluster_and_the_direct_connections_listen_on_loopback_only(tmp_path):
    script = (
        "import sys, numpy as np, ray\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "import pool_workers\n"
        "from tfrl.pools import RayDirectPool, cluster\n"
        "with cluster('ray'):\n"
        "    ray.cloudpickle.register_pickle_by_value(pool_workers)\n"
        "    with RayDirectPool(pool_workers.Echo, ['a'], np.ones(4, np.float32)) as pool:\n"
        "        pool_workers.collect_until(pool, pool_workers.from_each(0))\n"
        "        print('%s:%d' % pool.address, flush=True)\n"
        "        sys.stdin.readline()\n"
    )
    # without the switch this module sets for its own cluster: the pool's local cluster must need none
    environment = {key: value for key, value in os.environ.items() if key != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    with subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=environment,
    ) as driver:
        assert driver.stdout is not None and driver.stdin is not None
        direct = driver.stdout.readline().strip()
        held = _listening(_tree(driver.pid))
        driver.stdin.write("\n")
        driver.stdin.close()
        assert driver.wait(60) == 0
    programs = " ".join(program for _pid, program, _host in held)
    assert direct.startswith("127.0.0.1:") and "gcs_server" in programs and "raylet" in programs, held
    assert {host for _pid, _program, host in held} <= {"127.0.0.1", "::ffff:127.0.0.1"}, held


def test_worker_cpus_and_restarts_are_config_fields():
    config = make_config("a3c", overrides={"worker_cpus": "0.5", "max_worker_restarts": "1"})
    assert (config.worker_cpus, config.max_worker_restarts, config.workers_for(4)) == (0.5, 1, 8)
    with pytest.raises(ConfigError, match="worker_cpus"):
        make_config("a3c", overrides={"worker_cpus": 0})
