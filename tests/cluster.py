"""A throwaway Redis Cluster for tests: three masters on free loopback ports.

:func:`redis_cluster` starts one ``redis-server --cluster-enabled yes`` per master (no
persistence, node files in a temporary folder), joins them with ``redis-cli --cluster
create ... --cluster-replicas 0 --cluster-yes``, waits until every node reports
``cluster_state:ok`` and yields a :class:`ClusterServers` whose :attr:`~ClusterServers.url`
is what ``BASTION_REDIS_URL`` takes. On exit, or if anything fails on the way, every node is
killed. Nothing here touches the shared standalone Redis.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.live import free_port

MASTERS = 3
START_TIMEOUT = 15.0
# Nodes ping peers whose last answer is older than half the node timeout: a short one while
# joining makes the gossip, and so `--cluster create`, converge in about a second. Once the
# cluster is up it is raised, so a busy test machine cannot get a node marked as failed.
JOIN_NODE_TIMEOUT_MS = 500
NODE_TIMEOUT_MS = 15_000
ATTEMPTS = 3  # a free port can be taken by someone else between choosing and binding it


class ClusterStartError(RuntimeError):
    """The cluster could not be started; the message carries the tail of the logs."""


@dataclass
class ClusterNode:
    port: int
    bus_port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.folder / f"redis-{self.port}.log"

    def start(self) -> None:
        command = [
            "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--cluster-enabled", "yes",
            "--cluster-port", str(self.bus_port),  # instead of port + 10000, maybe > 65535
            "--cluster-config-file", f"nodes-{self.port}.conf",  # relative to --dir
            "--cluster-node-timeout", str(JOIN_NODE_TIMEOUT_MS),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.folder),
            "--logfile", str(self.log),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _client(node: ClusterNode) -> redis.Redis:
    return redis.Redis(port=node.port, socket_timeout=1, socket_connect_timeout=1)


def _answers(node: ClusterNode) -> bool:
    client = _client(node)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _cluster_info(node: ClusterNode) -> dict[str, str]:
    client = _client(node)
    try:
        raw = client.cluster("info")
    except redis.RedisError:
        return {}
    finally:
        client.close()
    if isinstance(raw, dict):
        return {str(k): v.decode() if isinstance(v, bytes) else str(v) for k, v in raw.items()}
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


@dataclass
class ClusterServers:
    """The nodes of one cluster; :meth:`close` kills them all, whatever state they are in."""

    folder: Path
    masters: int = MASTERS
    nodes: list[ClusterNode] = field(default_factory=list)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(node.address for node in self.nodes)

    def start(self) -> None:
        for attempt in range(1, ATTEMPTS + 1):
            self._spawn()
            try:
                self._wait(all_answer=True)
                break
            except ClusterStartError:
                if attempt == ATTEMPTS or all(node.running() for node in self.nodes):
                    raise
                self.close()  # a node lost its port to someone else: new ports, again
        self._create()
        self._wait(all_answer=False)
        for node in self.nodes:
            client = _client(node)
            try:
                client.config_set("cluster-node-timeout", NODE_TIMEOUT_MS)
            finally:
                client.close()

    def close(self) -> None:
        errors: list[BaseException] = []
        for node in self.nodes:
            try:
                node.stop()
            except BaseException as exc:  # stop the others before raising
                errors.append(exc)
        self.nodes = []
        if errors:
            raise errors[0]

    def _spawn(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        ports: set[int] = set()
        while len(ports) < 2 * self.masters:
            ports.add(free_port())
        chosen = sorted(ports)
        for port, bus_port in zip(chosen[::2], chosen[1::2], strict=True):
            node = ClusterNode(port, bus_port, self.folder)
            self.nodes.append(node)
            node.start()

    def _create(self) -> None:
        command = [
            "redis-cli", "--cluster", "create",
            *(node.address for node in self.nodes),
            "--cluster-replicas", "0",
            "--cluster-yes",
        ]  # fmt: skip
        try:
            created = subprocess.run(
                command, capture_output=True, text=True, timeout=START_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired:
            raise self._error(f"redis-cli --cluster create took over {START_TIMEOUT:g} s") from None
        if created.returncode != 0:
            output = (created.stdout + created.stderr).strip().splitlines()[-5:]
            raise self._error("redis-cli --cluster create failed:\n" + "\n".join(output))

    def _wait(self, *, all_answer: bool) -> None:
        """Until every node answers PING (``all_answer``) or says ``cluster_state:ok``."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if not all(node.running() for node in self.nodes):
                raise self._error("a redis-server exited")
            if all_answer:
                if all(_answers(node) for node in self.nodes):
                    return
            else:
                infos = [_cluster_info(node) for node in self.nodes]
                if all(
                    info.get("cluster_state") == "ok"
                    and info.get("cluster_known_nodes") == str(self.masters)
                    for info in infos
                ):
                    return
            if time.monotonic() > deadline:
                wanted = "answer" if all_answer else "reach cluster_state:ok"
                raise self._error(f"the nodes did not {wanted} within {START_TIMEOUT:g} s")
            time.sleep(0.05)

    def _error(self, message: str) -> ClusterStartError:
        logs = "\n".join(f"--- {node.address}\n{node.log_tail()}" for node in self.nodes)
        return ClusterStartError(f"{message}\n{logs}")


def cluster_tools_missing() -> str | None:
    """Why a cluster cannot be started here (a missing program), or None."""
    missing = [tool for tool in ("redis-server", "redis-cli") if shutil.which(tool) is None]
    return f"{' and '.join(missing)} not installed" if missing else None


@contextmanager
def redis_cluster(folder: Path, masters: int = MASTERS) -> Iterator[ClusterServers]:
    """A running cluster of ``masters`` masters and no replicas, killed on exit."""
    servers = ClusterServers(folder, masters)
    try:
        servers.start()
        yield servers
    finally:
        servers.close()
