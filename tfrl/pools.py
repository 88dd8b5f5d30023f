"""Worker pools: run N copies of a worker, hand each the latest published array, collect what it returns.

Nothing here knows about RL. A worker is built in its own process by ``make_worker(spec)`` and is a
callable ``step(published) -> message``; the pool runs one step at a time per worker:

    parent                                        worker i (its own process, anywhere the pool puts it)
    ────────────────────────────────────         ─────────────────────────────────────────────────────
    publish(array)                                step = make_worker(spec)          (once)
                                                  message = step(latest published array)
    results(timeout) → [(i, message), …]   ◄───   (returned as soon as it is ready)
    publish(new array); go_on(i)           ───►   message = step(latest published array), …

Three pools implement it: ``ProcessPool`` (``spawn``ed processes on this machine, the array in shared
memory, messages through pipes), and Ray actors on any node of a cluster: ``RayPool`` puts the array
in the object store once per publish, so the workers of a node share one copy, and takes messages as
Ray calls finish (``ray.wait``); ``RayDirectPool``, for small arrays, sends the array and the messages
over a connection from each actor to the driver, which costs a tenth of a Ray call.

Faults: a worker that *raises* is a bug a new copy would repeat, so ``results`` raises ``WorkerError``
with its traceback at once. A worker that *dies* (its process killed, its actor or its node lost) is
replaced by a new copy with the same spec, which starts from the array published last; ``on_event``
gets one line saying which worker died, why, and that it was replaced. Each worker slot is replaced
at most ``max_restarts`` times: one more death raises ``WorkerError``. Leaving a pool (it is a context
manager) stops every worker, so none outlives the run. Ray is imported only by the Ray pools and
``cluster``; without it they raise a ``ConfigError`` naming the ``pip install`` that adds it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import logging
import multiprocessing
import os
import pickle
import queue
import re
import secrets
import selectors
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from typing import Any

import numpy as np

from tfrl.errors import ConfigError, WorkerError

BACKENDS = ("process", "ray")
Step = Callable[[np.ndarray], Any]
MakeWorker = Callable[[Any], Step]
OnEvent = Callable[[str], None]
RAY_INSTALL = 'pip install -e ".[ray]"'
CONNECT_TIMEOUT_SECONDS = 5.0
# The largest published array (weights) that Ray workers get over a connection of their own
# (``RayDirectPool``); larger ones go through the object store, one copy per node (``RayPool``).
RAY_DIRECT_MAX_BYTES = 256 * 1024
# A connecting actor answers the driver's challenge, a fresh nonce per connection: which slot and
# start it is, and the proof that it knows the pool's secret (``_answer``), so no answer works twice.
SECRET_BYTES = NONCE_BYTES = 32
HELLO = struct.Struct("<qq")  # the worker id and which start of its slot it is; the HMAC follows
ANSWER_BYTES = HELLO.size + hashlib.sha256().digest_size
HELLO_DEADLINE_SECONDS = 5.0  # for a connecting actor's whole answer, however slowly it comes
SERVE_CHECK_SECONDS = 1.0  # how often RayDirectPool asks Ray whether an actor died without a word
# Where Ray says, at every start of a new local cluster, that it has token authentication (its default
# since 2.59) and how to turn it off: a run's own loopback cluster keeps it, and the run does not print it.
RAY_TOKEN_NOTICE = "ray._private.authentication.authentication_token_setup"


def _ignore(_line: str) -> None:
    """The default ``on_event``: a pool used on its own reports nothing."""


def _silenced_here() -> bool:
    """Whether this program silenced TensorFlow's start-up lines (it imported ``tfrl.quiet``, as the
    ``tfrl`` command does): its workers then silence theirs too, since each imports TensorFlow anew."""
    return "tfrl.quiet" in sys.modules


def _build_worker(quiet: bool, pickled: bytes) -> Step:
    """The worker whose ``(make_worker, spec)`` is ``pickled``, built in the process it runs in.

    It travels pickled so that TensorFlow, which unpickling it may import, is imported only after
    ``tfrl.quiet`` when ``quiet`` (a program that keeps TensorFlow's output keeps its workers' too)."""
    if quiet:
        import tfrl.quiet  # noqa: F401
    make_worker, spec = pickle.loads(pickled)
    return make_worker(spec)


class WorkerPool(ABC):
    """What both pools share: the specs, the restart budget per worker slot, and the context manager.

    Subclasses start a worker (``_start``), stop them all (``close``), publish, collect results and
    let a worker go on; a death they detect goes through ``_lost``, which replaces the worker or raises.

    ``pipelined`` workers do not wait for ``go_on`` after a step: each starts its next step at once,
    on the array published in answer to its message before (with one worker, exactly that one), so
    the round trip to the caller and back overlaps its work. Otherwise a worker waits for ``go_on``
    and steps on the array published before it.
    """

    def __init__(
        self,
        make_worker: MakeWorker,
        specs: list[Any],
        published: np.ndarray,
        *,
        max_restarts: int = 3,
        pipelined: bool = False,
        on_event: OnEvent = _ignore,
        name: str = "worker",
    ) -> None:
        self.make_worker, self.specs = make_worker, specs
        self.max_restarts, self.on_event, self.name = max_restarts, on_event, name
        self.pipelined = pipelined
        self.restarts = [0] * len(specs)
        self.publish(published)

    def __enter__(self) -> WorkerPool:
        try:
            for worker_id in range(len(self.specs)):
                self._start(worker_id)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _lost(self, worker_id: int, cause: str) -> None:
        """Worker ``worker_id`` died of ``cause``: start a new copy, or raise once its slot has none left."""
        if self.restarts[worker_id] >= self.max_restarts:
            raise WorkerError(
                f"{self.name} {worker_id} {cause}; it was replaced {self.restarts[worker_id]} time(s) already "
                f"(max_worker_restarts={self.max_restarts}), so the run stopped"
            )
        self.restarts[worker_id] += 1
        self._start(worker_id)
        self.on_event(
            f"{self.name} {worker_id} {cause}; replaced it with a new one starting from the current weights "
            f"(restart {self.restarts[worker_id]} of {self.max_restarts})"
        )

    def _raised(self, worker_id: int, details: str) -> WorkerError:
        return WorkerError(f"{self.name} {worker_id} raised an exception; the run stopped.\n{details.rstrip()}")

    @abstractmethod
    def _start(self, worker_id: int) -> None:
        """Implemented by each backend."""

    @abstractmethod
    def publish(self, published: np.ndarray) -> None:
        """Make ``published`` the array every worker's next step gets."""

    @abstractmethod
    def results(self, timeout: float) -> list[tuple[int, Any]]:
        """The ``(worker id, message)`` of steps that finish within ``timeout`` seconds; each such
        worker waits for ``go_on``. Deaths found meanwhile are replaced (or raise ``WorkerError``)."""

    @abstractmethod
    def go_on(self, worker_id: int) -> None:
        """Let a worker whose message was collected run one more step, on the array published last."""

    @abstractmethod
    def close(self) -> None:
        """Stop every worker."""


# ------------------------------------------------------------------------------------------------
# Processes on this machine.
# ------------------------------------------------------------------------------------------------


def _process_main(quiet: bool, worker: bytes, connection: Connection, shared: Any, lock: Any, pipelined: bool) -> None:
    """A worker process: build the worker (``_build_worker``), then step on the shared array, send,
    wait for "go on", read the array, repeat. ``pipelined``: after a step, wait for the "go on" of the
    message before, read the array, then send, and step on what was read: the array can then hold
    the answer to that earlier message but never to the one just sent, whatever the timing.

    Sends ``("result", message)`` after each step, or ``("error", traceback)`` before exiting with
    code 1 if anything raises. SIGINT is ignored: Ctrl-C is the parent's to handle.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        step = _build_worker(quiet, worker)
        published = np.frombuffer(shared, np.float32)
        with lock:
            latest = published.copy()
        unanswered = False  # pipelined: a message sent whose "go on" has not come yet
        while True:
            message = step(latest)
            if not pipelined:
                connection.send(("result", message))
                connection.recv()
            elif unanswered:
                connection.recv()
            with lock:
                latest = published.copy()
            if pipelined:
                connection.send(("result", message))
                unanswered = True
    except (EOFError, BrokenPipeError):
        return  # the parent is gone or closed the pipe: nothing left to report to
    except BaseException:  # noqa: BLE001 — every failure goes to the parent, named
        try:
            connection.send(("error", traceback.format_exc()))
        finally:
            os._exit(1)


class ProcessPool(WorkerPool):
    """Workers as ``spawn``ed processes (TensorFlow is never forked), the published array in shared
    memory (one float32 buffer under a lock), each worker's messages through its own pipe.

    A death shows as the process's sentinel becoming ready with nothing left in its pipe; the cause
    is its exit code or the signal that killed it.
    """

    def __init__(
        self,
        make_worker: MakeWorker,
        specs: list[Any],
        published: np.ndarray,
        *,
        join_timeout: float = 5.0,
        **options: Any,
    ) -> None:
        """``options`` are ``WorkerPool``'s."""
        self.context = multiprocessing.get_context("spawn")
        self.shared = self.context.RawArray("f", int(published.size))
        self.array = np.frombuffer(self.shared, np.float32)
        self.lock = self.context.Lock()
        self.join_timeout = join_timeout
        self.processes: list[Any] = [None] * len(specs)
        self.connections: list[Connection | None] = [None] * len(specs)
        super().__init__(make_worker, specs, published, **options)

    def _start(self, worker_id: int) -> None:
        parent_end, child_end = self.context.Pipe()
        process = self.context.Process(
            target=_process_main,
            args=(
                _silenced_here(),
                pickle.dumps((self.make_worker, self.specs[worker_id])),
                child_end,
                self.shared,
                self.lock,
                self.pipelined,
            ),
            name=f"{self.name.replace(' ', '-')}-{worker_id}",
            daemon=True,
        )
        process.start()
        child_end.close()  # the worker holds it now: its death closes the pipe
        self.processes[worker_id], self.connections[worker_id] = process, parent_end

    def publish(self, published: np.ndarray) -> None:
        with self.lock:
            self.array[:] = published

    def go_on(self, worker_id: int) -> None:
        connection = self.connections[worker_id]
        assert connection is not None
        with contextlib.suppress(OSError):  # it died right after sending: its sentinel tells ``results``
            connection.send(True)

    def results(self, timeout: float) -> list[tuple[int, Any]]:
        owners: dict[Any, int] = {}
        for worker_id, (process, connection) in enumerate(zip(self.processes, self.connections, strict=True)):
            owners[process.sentinel] = owners[connection] = worker_id  # ints and Connections: no overlap
        arrived, replaced = [], set()
        for ready in wait(list(owners), timeout):
            worker_id = owners[ready]
            connection = self.connections[worker_id]
            if worker_id in replaced or connection is None:
                continue
            if not connection.poll():  # its sentinel, and nothing left to read: it died
                self._lost_process(worker_id)
                replaced.add(worker_id)
                continue
            try:
                kind, payload = connection.recv()
            except (EOFError, OSError):
                self._lost_process(worker_id)
                replaced.add(worker_id)
                continue
            if kind == "error":
                raise self._raised(worker_id, payload)
            arrived.append((worker_id, payload))
        return arrived

    def _lost_process(self, worker_id: int) -> None:
        process, connection = self.processes[worker_id], self.connections[worker_id]
        process.join(self.join_timeout)
        if process.is_alive():  # its pipe broke but it lives on: make sure it is gone
            process.kill()
            process.join()
        if connection is not None:
            connection.close()
        code = process.exitcode
        cause = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        self._lost(worker_id, f"(pid {process.pid}) {cause}")

    def close(self) -> None:
        """Terminate every worker still running, wait for each, kill any that ignores SIGTERM."""
        started = [process for process in self.processes if process is not None]
        for process in started:
            if process.is_alive():
                process.terminate()
        for process in started:
            process.join(self.join_timeout)
            if process.is_alive():
                process.kill()
                process.join()
        for connection in self.connections:
            if connection is not None:
                connection.close()


# ------------------------------------------------------------------------------------------------
# Ray actors, on any node of a cluster.
# ------------------------------------------------------------------------------------------------


def import_ray() -> Any:
    """The ``ray`` module, or a ``ConfigError`` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--backend ray needs Ray, which is not installed; install it with: {RAY_INSTALL}") from None
    return ray


class _RayWorker:
    """The actor around one worker (``_build_worker``). The worker is built in its first step (or in
    ``serve``), so an exception while building it comes back as that step's error (a bug: fatal), not
    as the actor's death (replaced)."""

    def __init__(self, quiet: bool, worker: bytes) -> None:
        self.quiet, self.worker = quiet, worker
        self.step_function: Step | None = None

    def step(self, published: np.ndarray) -> Any:
        """One step of the worker on ``published``; its message."""
        if self.step_function is None:
            self.step_function = _build_worker(self.quiet, self.worker)
        return self.step_function(published)

    def serve(self, address: tuple[str, int], secret: bytes, worker_id: int, start: int) -> None:
        """``RayDirectPool``'s worker loop: connect to the driver at ``address``, answer its challenge
        as the ``start``-th actor of slot ``worker_id`` with the pool's ``secret`` (``_answer``), then step
        on each array that arrives and send back ``("result", message)`` — or ``("error", traceback)``
        and stop. Arrays are read as they come, while a step runs, so the driver never waits to send.
        Returns when the driver closes the connection."""
        try:
            sock = socket.create_connection(address, timeout=CONNECT_TIMEOUT_SECONDS)
            sock.sendall(_answer(secret, _receive_exactly(sock, NONCE_BYTES), worker_id, start))
        except OSError as error:
            raise ConnectionError(
                f"cannot reach the driver at {address[0]}:{address[1]} ({error}); Ray workers with small "
                "networks connect to it directly, so its machine must accept connections from theirs"
            ) from None
        sock.settimeout(None)
        connection = Connection(sock.detach())
        arrays: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        threading.Thread(target=_read_into, args=(connection, arrays), daemon=True).start()
        try:
            step = _build_worker(self.quiet, self.worker)
            while (published := arrays.get()) is not None:
                if not _sent(connection, ("result", step(np.frombuffer(published, np.float32)))):
                    return  # the driver is gone
        except BaseException:  # noqa: BLE001 — every failure of the worker goes to the driver, named
            _sent(connection, ("error", traceback.format_exc()))
        finally:
            connection.close()


def _answer(secret: bytes, nonce: bytes, worker_id: int, start: int) -> bytes:
    """An actor's answer to the driver's ``nonce``: that it is the ``start``-th actor of slot ``worker_id``,
    and HMAC-SHA256 under ``secret`` of the nonce and that claim, which no one without the secret can
    make and which is worth nothing on another connection (another nonce)."""
    claim = HELLO.pack(worker_id, start)
    return claim + hmac.new(secret, nonce + claim, hashlib.sha256).digest()


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    """``size`` bytes from ``sock``; ``ConnectionError`` if it closes first."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def _sent(connection: Connection, reply: tuple[str, Any]) -> bool:
    """Whether ``reply`` went to the driver (False: the connection is closed)."""
    try:
        connection.send(reply)
    except OSError:
        return False
    return True


def _read_into(connection: Connection, arrays: queue.SimpleQueue) -> None:
    """Put each array that arrives on ``connection`` into ``arrays``, then ``None`` once it closes."""
    try:
        while True:
            arrays.put(connection.recv_bytes())
    except (EOFError, OSError):
        arrays.put(None)


def _death_cause(error: Exception) -> str:
    """Which process died and why, from the text of Ray's ``ActorDiedError`` (it has no fields for them)."""
    text = str(error)
    pid, ip = re.search(r"\bpid: (\d+)", text), re.search(r"\bip: (\S+)", text)
    because = re.search(r"because (.+?)\.(?:\s|$)", text)
    where = f"(pid {pid.group(1)} on {ip.group(1)}) " if pid and ip else ""
    return f"{where}died: {because.group(1) if because else text.splitlines()[0]}"


class RayPool(WorkerPool):
    """Workers as Ray actors (``cpus_per_worker`` CPUs each, placed by Ray on any node), in a cluster
    this process is already connected to (``cluster`` connects), each step a Ray call.

    ``publish`` puts the array in the object store once; every step submitted after it gets that
    object, which Ray hands to the workers of a node as one shared, read-only copy: the pool for large
    networks, whose weights would cost more to send to each worker than a Ray call costs. Each worker
    has one step submitted, or two when pipelined (an actor runs them in order: the second carries the
    array published before it); ``results`` takes finished ones with ``ray.wait``.
    """

    def __init__(
        self,
        make_worker: MakeWorker,
        specs: list[Any],
        published: np.ndarray,
        *,
        cpus_per_worker: float = 1.0,
        **options: Any,
    ) -> None:
        """``options`` are ``WorkerPool``'s."""
        self.ray = import_ray()
        if not self.ray.is_initialized():
            raise ConfigError("RayPool needs a connected Ray cluster: start it inside tfrl.pools.cluster('ray')")
        self.actor_class = self.ray.remote(_RayWorker).options(
            num_cpus=cpus_per_worker, max_restarts=0, max_task_retries=0
        )
        self.actors: list[Any] = [None] * len(specs)
        self.in_flight: dict[Any, int] = {}  # object ref of a step → its worker
        super().__init__(make_worker, specs, published, **options)

    def _new_actor(self, worker_id: int) -> Any:
        # cloudpickle, as Ray itself uses: a worker class defined in a script's __main__ travels by value.
        worker = self.ray.cloudpickle.dumps((self.make_worker, self.specs[worker_id]))
        self.actors[worker_id] = self.actor_class.remote(_silenced_here(), worker)
        return self.actors[worker_id]

    def _start(self, worker_id: int) -> None:
        self._new_actor(worker_id)
        for _ in range(2 if self.pipelined else 1):
            self.go_on(worker_id)

    def publish(self, published: np.ndarray) -> None:
        self.latest = self.ray.put(published)

    def go_on(self, worker_id: int) -> None:
        self.in_flight[self.actors[worker_id].step.remote(self.latest)] = worker_id

    def results(self, timeout: float) -> list[tuple[int, Any]]:
        if not self.in_flight:
            time.sleep(timeout)
            return []
        pending = list(self.in_flight)
        ready, _ = self.ray.wait(pending, num_returns=1, timeout=timeout)
        if ready and len(pending) > 1:  # and every other step finished by now, in one call
            ready, _ = self.ray.wait(pending, num_returns=len(pending), timeout=0)
        try:  # one call for them all; a failure is sorted out one step at a time below
            messages = self.ray.get(ready)
        except self.ray.exceptions.RayError:
            pass
        else:
            return [
                (self.in_flight.pop(reference), message) for reference, message in zip(ready, messages, strict=True)
            ]
        arrived = []
        for reference in ready:
            if reference not in self.in_flight:
                continue  # a step of an actor found dead above: its replacement runs steps of its own
            worker_id = self.in_flight.pop(reference)
            try:
                arrived.append((worker_id, self.ray.get(reference)))
            except self.ray.exceptions.RayError as error:
                for other in [other for other, owner in self.in_flight.items() if owner == worker_id]:
                    del self.in_flight[other]  # its other steps died with it
                self._failed(worker_id, error)
        return arrived

    def _failed(self, worker_id: int, error: Exception) -> None:
        """A call of worker ``worker_id`` ended in ``error``: its actor died (replace it) or it raised (stop)."""
        if not isinstance(error, self.ray.exceptions.RayActorError):
            raise self._raised(worker_id, str(error)) from None
        self.ray.kill(self.actors[worker_id])  # in case only its connection was lost
        self._lost(worker_id, _death_cause(error))

    def close(self) -> None:
        """Kill every actor (their steps in flight are dropped)."""
        for actor in self.actors:
            if actor is not None:
                self.ray.kill(actor)
        self.in_flight.clear()


class RayDirectPool(RayPool):
    """Ray actors as in ``RayPool``, each connected straight to the driver for the whole run: the pool
    for small networks. Ray places, watches and replaces the actors; arrays and messages go over the
    connection (a TCP socket to a port the driver opens on its node's address).

    A Ray call costs the driver ~0.4 ms of CPU and ~1 ms in all (measured on 2 cores: a worker's
    CartPole step is ~4 ms), a message over the connection ~0.05 ms. Each worker gets its own copy of
    the array, which is why large networks use ``RayPool``'s shared object-store copy instead.

    An actor proves it is the pool's by answering a challenge with the secret it got through Ray
    (``_answer``) before the driver unpickles anything from it; a thread of the pool's own
    (``_Doorman``) takes connections and their answers, so a client that connects and says nothing,
    or trickles, never holds up training. A connection that closes means the actor died: its cause
    comes from Ray (the actor's ``serve`` call fails) when Ray learns of it, which for a lost node can
    take seconds; the other workers go on meanwhile. An actor that dies before it connects, or a node that goes silent
    without closing its connections, is found the same way, through ``serve``.
    """

    def __init__(self, make_worker: MakeWorker, specs: list[Any], published: np.ndarray, **options: Any) -> None:
        """``options`` are ``RayPool``'s."""
        super().__init__(make_worker, specs, published, **options)
        node_id = self.ray.get_runtime_context().get_node_id()
        host = next(node["NodeManagerAddress"] for node in self.ray.nodes() if node["NodeID"] == node_id)
        self.secret = secrets.token_bytes(SECRET_BYTES)
        self.doorman = _Doorman(host, self.secret)
        self.address: tuple[str, int] = self.doorman.address
        self.connections: list[Connection | None] = [None] * len(specs)
        self.starts = [0] * len(specs)  # which start of the slot may connect: a replaced actor's late one is refused
        self.unsent = [0] * len(specs)  # go_ons before the actor connected
        self.serving: dict[Any, int] = {}  # object ref of an actor's serve call → its worker
        self.next_check = 0.0

    def _start(self, worker_id: int) -> None:
        self.starts[worker_id] += 1
        serve = self._new_actor(worker_id).serve.remote(self.address, self.secret, worker_id, self.starts[worker_id])
        self.serving[serve] = worker_id
        self.connections[worker_id] = None
        self.unsent[worker_id] = 2 if self.pipelined else 1

    def publish(self, published: np.ndarray) -> None:
        self.latest = np.asarray(published, np.float32).tobytes()

    def go_on(self, worker_id: int) -> None:
        connection = self.connections[worker_id]
        if connection is None:
            self.unsent[worker_id] += 1
            return
        with contextlib.suppress(OSError):  # it died after sending: its serve call tells ``results``
            connection.send_bytes(self.latest)

    def results(self, timeout: float) -> list[tuple[int, Any]]:
        owners: dict[Any, int] = {
            connection: worker_id for worker_id, connection in enumerate(self.connections) if connection
        }
        arrived = []
        for ready in wait([self.doorman.bell, *owners], timeout):
            if ready is self.doorman.bell:
                self._admit()
                continue
            worker_id = owners[ready]
            connection = self.connections[worker_id]
            assert connection is not None
            try:
                kind, payload = connection.recv()
            except (EOFError, OSError):
                connection.close()  # dying: Ray will say why (``_check_serving``)
                self.connections[worker_id] = None
                self.next_check = 0.0
                continue
            if kind == "error":
                raise self._raised(worker_id, payload)
            arrived.append((worker_id, payload))
        if time.monotonic() >= self.next_check:
            self._check_serving()
        return arrived

    def _admit(self) -> None:
        """Take each connection the doorman let in that claims the current start of its slot (a
        replaced actor's late one is closed, as is a second one for a slot connected already); send
        it the steps it was let go on for meanwhile."""
        for worker_id, start, sock in self.doorman.arrivals():
            current = 0 <= worker_id < len(self.starts) and self.starts[worker_id] == start
            if not current or self.connections[worker_id] is not None:
                sock.close()
                continue
            self.connections[worker_id] = Connection(sock.detach())
            for _ in range(self.unsent[worker_id]):
                self.go_on(worker_id)
            self.unsent[worker_id] = 0

    def _check_serving(self) -> None:
        """Replace (or stop for) each actor whose serve call ended: Ray's word on deaths, ~once a second,
        and at once after a connection closed."""
        self.next_check = time.monotonic() + SERVE_CHECK_SECONDS
        ended, _ = self.ray.wait(list(self.serving), num_returns=len(self.serving), timeout=0)
        for reference in ended:
            worker_id = self.serving.pop(reference)
            connection, self.connections[worker_id] = self.connections[worker_id], None
            if connection is not None:
                connection.close()
            try:
                self.ray.get(reference)
            except self.ray.exceptions.RayError as error:
                self._failed(worker_id, error)
            else:
                self._lost(worker_id, "closed its connection to the driver")
        if any(connection is None for connection in self.connections):
            self.next_check = time.monotonic()  # one is starting or dying: look again on the next call

    def close(self) -> None:
        """Close every connection and the port, and kill every actor."""
        for connection in self.connections:
            if connection is not None:
                connection.close()
        self.doorman.close()
        self.serving.clear()
        super().close()


@dataclasses.dataclass
class _Caller:
    """A connection to the driver's port whose answer is awaited: by when, to which nonce, what came so far."""

    deadline: float
    nonce: bytes
    heard: bytearray = dataclasses.field(default_factory=bytearray)


class _Doorman:
    """The port of a ``RayDirectPool``'s driver, kept by a thread of its own so that no connecting
    client can hold up training: it accepts every connection, sends it a fresh nonce and waits for
    its whole answer (``_answer``) at most ``HELLO_DEADLINE_SECONDS`` in all (one select loop for
    every caller, so a slow one delays no other). A connection whose answer proves the pool's secret
    for its nonce is handed over (``arrivals``) with a byte on ``bell``, the socket the driver waits
    on beside its connections; any other, or one with no answer in time, is closed unread. Which
    slot and start it claims is the driver's to judge (``RayDirectPool._admit``)."""

    def __init__(self, host: str, secret: bytes) -> None:
        self.secret = secret
        self.server = socket.create_server((host, 0))
        self.server.setblocking(False)
        self.address: tuple[str, int] = self.server.getsockname()[:2]
        self.admitted: queue.SimpleQueue[tuple[int, int, socket.socket]] = queue.SimpleQueue()
        self.bell, self._ring = socket.socketpair()
        self._stop, self._stopped = socket.socketpair()
        for end in (self.bell, self._ring):
            end.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.server, selectors.EVENT_READ)
        self._selector.register(self._stopped, selectors.EVENT_READ)
        self._callers: dict[socket.socket, _Caller] = {}
        self.thread = threading.Thread(target=self._serve, name="tfrl-doorman", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        """Accept callers and read their answers until ``close``; close the port and every caller then."""
        try:
            while True:
                soonest = min((caller.deadline for caller in self._callers.values()), default=None)
                wait_for = None if soonest is None else max(soonest - time.monotonic(), 0.0)
                for key, _ in self._selector.select(wait_for):
                    if key.fileobj is self._stopped:
                        return
                    if key.fileobj is self.server:
                        self._greet()
                    else:
                        self._hear(key.data)
                now = time.monotonic()
                for sock in [sock for sock, caller in self._callers.items() if caller.deadline <= now]:
                    self._dismiss(sock)
        finally:
            for sock in list(self._callers):
                self._dismiss(sock)
            self.server.close()

    def _greet(self) -> None:
        """Let in a caller that knocked (none, if it gave up meanwhile) and challenge it with a fresh nonce."""
        try:
            sock, _ = self.server.accept()
        except OSError:
            return
        sock.setblocking(False)
        caller = _Caller(time.monotonic() + HELLO_DEADLINE_SECONDS, secrets.token_bytes(NONCE_BYTES))
        self._callers[sock] = caller
        self._selector.register(sock, selectors.EVENT_READ, sock)
        try:
            sent = sock.send(caller.nonce)  # a new connection's empty buffer takes it whole
        except OSError:
            sent = 0
        if sent < NONCE_BYTES:
            self._dismiss(sock)

    def _hear(self, sock: socket.socket) -> None:
        """Read what ``sock`` sent of its answer; once whole, hand it over if it proves the secret."""
        caller = self._callers[sock]
        try:
            chunk = sock.recv(ANSWER_BYTES - len(caller.heard))
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:  # it closed, or broke, before answering
            self._dismiss(sock)
            return
        caller.heard += chunk
        if len(caller.heard) < ANSWER_BYTES:
            return
        worker_id, start = HELLO.unpack_from(caller.heard)
        if not hmac.compare_digest(bytes(caller.heard), _answer(self.secret, caller.nonce, worker_id, start)):
            self._dismiss(sock)
            return
        self._selector.unregister(sock)
        del self._callers[sock]
        sock.setblocking(True)
        self.admitted.put((worker_id, start, sock))
        with contextlib.suppress(BlockingIOError):  # a full bell rings already
            self._ring.send(b"\0")

    def _dismiss(self, sock: socket.socket) -> None:
        """Close a caller unread: its answer was wrong, did not come whole in time, or the pool closes."""
        self._selector.unregister(sock)
        del self._callers[sock]
        sock.close()

    def arrivals(self) -> Iterator[tuple[int, int, socket.socket]]:
        """``(worker id, start, socket)`` of each caller let in since the last call (the driver's side)."""
        with contextlib.suppress(BlockingIOError):
            self.bell.recv(4096)
        while True:
            try:
                yield self.admitted.get_nowait()
            except queue.Empty:
                return

    def close(self) -> None:
        """Stop the thread, close the port and every connection not taken yet (once: again, nothing)."""
        if self._stop.fileno() < 0:
            return
        self._stop.send(b"\0")
        self.thread.join()
        self._selector.close()
        for _worker_id, _start, sock in self.arrivals():
            sock.close()
        for end in (self.bell, self._ring, self._stop, self._stopped):
            end.close()


def make_pool(
    backend: str,
    make_worker: MakeWorker,
    specs: list[Any],
    published: np.ndarray,
    *,
    cpus_per_worker: float = 1.0,
    **options: Any,
) -> WorkerPool:
    """The pool of ``backend`` (``ray`` needs ``cluster("ray")`` around it); ``cpus_per_worker`` is Ray's,
    ``options`` are ``WorkerPool``'s."""
    if backend == "ray":
        ray_pool = RayDirectPool if published.nbytes <= RAY_DIRECT_MAX_BYTES else RayPool
        return ray_pool(make_worker, specs, published, cpus_per_worker=cpus_per_worker, **options)
    return ProcessPool(make_worker, specs, published, **options)


def available_cpus(backend: str) -> int:
    """CPUs the pools of ``backend`` can use: this machine's cores, or the connected cluster's CPUs."""
    if backend == "ray":
        return int(import_ray().cluster_resources().get("CPU", 1))
    return os.cpu_count() or 1


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``address`` if it is ``HOST:PORT`` (an IPv6 host in brackets, the port in
    1..65535), else None."""
    host, _, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        return None  # an IPv6 host without brackets: where it ends is a guess
    if not host or any(character.isspace() for character in host) or not (port.isascii() and port.isdigit()):
        return None
    return (host, int(port)) if 1 <= int(port) <= 65535 else None


def _check_address(address: str) -> None:
    """Refuse within seconds an ``--ray-address`` that is not a cluster's address (``ray.init`` would
    misread it, or start a local cluster of its own for ``local``), or a ``HOST:PORT`` with nothing
    listening (``ray.init`` would retry for minutes)."""
    if address == "auto":
        return  # Ray finds the cluster `ray start` made here, or says it found none
    where = _host_port(address.removeprefix("ray://"))
    if where is None:
        raise ConfigError(
            f"--ray-address {address} is not a Ray cluster's address: give HOST:PORT (a port in 1-65535, "
            "an IPv6 host in [brackets]), ray://HOST:PORT or auto, or leave it out for a new local cluster"
        )
    try:
        socket.create_connection(where, timeout=CONNECT_TIMEOUT_SECONDS).close()
    except OSError as error:
        raise ConfigError(
            f"no Ray cluster answers at --ray-address {address} ({error.strerror or error}); start one with "
            f"`ray start --head` on that machine, or leave --ray-address out for a local one"
        ) from None


@contextlib.contextmanager
def _warnings_held(logger_name: str) -> Iterator[None]:
    """Warnings of the logger ``logger_name`` held back for the duration."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _loopback_only(ray: Any) -> Iterator[None]:
    """A new local cluster bound to 127.0.0.1 alone, for the duration of its ``ray.init``.

    Ray replaces a loopback ``_node_ip_address`` by this machine's routable address, and its GCS,
    raylet and workers then listen there or on every interface, unless it runs as on macOS and
    Windows (``ENABLE_RAY_CLUSTER`` off), where it keeps 127.0.0.1. The nodes and workers it starts
    are given that address, so the switch is needed only while it starts them; Ray's notice at every
    new local cluster about its token authentication (kept on) is held back meanwhile too."""
    constants = ray._private.ray_constants
    enabled = constants.ENABLE_RAY_CLUSTER
    constants.ENABLE_RAY_CLUSTER = False
    try:
        with _warnings_held(RAY_TOKEN_NOTICE):
            yield
    finally:
        constants.ENABLE_RAY_CLUSTER = enabled


def check_backend(backend: str, address: str | None = None) -> None:
    """Refuse, within seconds and before a run starts, a backend that cannot work here: Ray not
    installed, or an address that is malformed or has nothing listening."""
    if backend == "ray":
        import_ray()
        if address is not None:
            _check_address(address)


@contextlib.contextmanager
def cluster(backend: str, address: str | None = None) -> Iterator[dict[str, Any]]:
    """Where the workers of ``backend`` run, for the duration of a run; yields its description.

    ``process``: this machine. ``ray``: the cluster at ``address`` (``auto``: the one ``ray start``
    made on this machine), or a new local one bound to 127.0.0.1 when ``address`` is None. A process
    already connected to Ray keeps its connection (and this leaves it open). The description —
    backend, address, live nodes, CPUs — goes into the run directory.
    """
    if backend == "process":
        yield {"backend": "process", "nodes": 1, "cpus": os.cpu_count() or 1}
        return
    ray = import_ray()
    connected_here = not ray.is_initialized()
    if connected_here:
        check_backend(backend, address)
        local = {"_node_ip_address": "127.0.0.1", "include_dashboard": False} if address is None else {}
        try:
            # a cluster the user started keeps every notice, "token authentication is disabled" above all
            with _loopback_only(ray) if address is None else contextlib.nullcontext():
                ray.init(address=address or "local", logging_level=logging.WARNING, **local)
        except ConnectionError as error:
            raise ConfigError(f"cannot connect to the Ray cluster at --ray-address {address}: {error}") from None
    try:
        nodes = [node for node in ray.nodes() if node["Alive"]]
        yield {
            "backend": "ray",
            "address": ray.get_runtime_context().gcs_address,
            "nodes": len(nodes),
            "cpus": int(ray.cluster_resources().get("CPU", 0)),
        }
    finally:
        if connected_here:
            ray.shutdown()
