"""Multi-worker training: the TF_CONFIG that `edgemtl train --workers ... --worker-index i` writes, and which rows
a worker reads (docs/distributed.md). TF-free."""
import json

from ..errors import EdgemtlError


def tf_config(workers: str, index) -> dict:
    """`--workers host:port,host:port,...` and `--worker-index i` -> the TF_CONFIG of worker i (worker 0 is the
    chief: it writes the run directory)."""
    if index is None:
        raise EdgemtlError("--workers needs --worker-index: this machine's position in the list (0 is the chief)")
    addresses = [a.strip() for a in workers.split(",")]
    for a in addresses:
        host, _, port = a.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise EdgemtlError(f"--workers: '{a}' is not host:port (e.g. 10.0.0.5:12345); give every worker, "
                               f"comma-separated, in the same order on every machine")
    repeated = sorted({a for a in addresses if addresses.count(a) > 1})
    if repeated:
        raise EdgemtlError(f"--workers: '{repeated[0]}' is listed more than once")
    if len(addresses) < 2:
        raise EdgemtlError("--workers: give at least 2 workers (one machine trains without --workers)")
    if not 0 <= index < len(addresses):
        raise EdgemtlError(f"--worker-index: {index} is not a position in the {len(addresses)} workers "
                           f"(0 to {len(addresses) - 1})")
    return {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}


def worker_shard(config_text: str | None) -> tuple[int, int] | None:
    """(workers, this worker's index) from TF_CONFIG: the chief (if any) first, then the workers in order; None
    without a cluster of several. An evaluator task reads no training shard."""
    if not config_text:
        return None
    try:
        config = json.loads(config_text)
        cluster, task = config.get("cluster", {}), config.get("task", {})
        members = [("chief", i) for i in range(len(cluster.get("chief", [])))]
        members += [("worker", i) for i in range(len(cluster.get("worker", [])))]
        me = (task.get("type"), int(task.get("index", 0)))
    except (ValueError, AttributeError, TypeError) as e:
        raise EdgemtlError(f"TF_CONFIG: not a cluster description ({e})") from None
    if len(members) < 2 or me not in members:
        return None
    return len(members), members.index(me)
