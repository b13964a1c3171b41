"""Run a real ``treedec worker`` on the tiny random model (tests and benchmarks only).

``python tests/worker_entry.py redis://127.0.0.1:PORT/0 [--lease 3] [--name w1] [--seed 0]``

The worker is the production one (``api.jobs.worker.run_worker``: RQ SimpleWorker, leases, reaping);
only the model differs: ``tests/tiny_model.make_tiny_lm`` instead of a model spec, so the tiny
model stays test-only.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> int:
    from api.core.engine import Engine
    from api.jobs.worker import run_worker
    from tests.tiny_model import make_tiny_lm

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("queue")
    parser.add_argument("--lease", type=int, default=3)
    parser.add_argument("--name", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: workers share the CPU fairly)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=os.environ.get("TREEDEC_LOG", "WARNING"))
    import torch

    torch.set_num_threads(args.threads)
    engine = Engine(model_spec=f"tiny-seed{args.seed}", lm=make_tiny_lm(args.seed), sandbox="process")
    run_worker(engine, args.queue, name=args.name, lease_s=args.lease)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
