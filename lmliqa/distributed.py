"""Scoring past one machine with Ray Data (``pip install 'lmliqa[ray]'``): the torch-free scorer in an actor pool,
one model load per actor, rows back in input order.

    import ray
    from lmliqa.distributed import ScoreBatch
    ds = ray.data.from_items([{"path": p} for p in paths])          # or read_text / read_parquet of a manifest
    scores = ds.map_batches(ScoreBatch, fn_constructor_kwargs={"model": "dist/mobile_int8.onnx"},
                            batch_size=8, concurrency=4, num_cpus=1)
    scores.write_parquet("s3://bucket/scores/")                     # image, score, error, error_kind

``lmliqa score --ray ADDRESS|local`` runs the same pipeline for folders, globs and ``--files-from`` lists and
writes the usual CSV / JSON Lines (``--resume`` included). Every actor decodes with the same contract code as a
single process, so the scores are the single-process scores.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from .decode import DEFAULT_MAX_PIXELS


class ScoreBatch:
    """A Ray Data callable class: loads the artifact once per actor, then scores batches of ``{"path": [...]}``
    into ``{"image", "score", "error", "error_kind"}`` columns (score NaN where the image failed)."""

    def __init__(self, model: str | None = None, target: str | None = None, precision: str | None = None,
                 threads: int | None = 1, workers: int = 1, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
        from .runtimes import load

        self.scorer = load(model, target=target, precision=precision, threads=threads)
        self.workers, self.max_pixels = workers, max_pixels

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [str(p) for p in batch["path"]]
        results = list(self.scorer.score_many(paths, batch_size=max(1, len(paths)), workers=self.workers,
                                              max_pixels=self.max_pixels))
        return {"image": np.array([r.image for r in results], dtype=object),
                "score": np.array([np.nan if r.score is None else r.score for r in results], dtype=np.float64),
                "error": np.array([r.error for r in results], dtype=object),
                "error_kind": np.array([r.error_kind for r in results], dtype=object)}


def score_with_ray(paths: Iterable[str], model: str | None, address: str = "local", actors: int = 2,
                   batch_size: int = 8, target: str | None = None, precision: str | None = None,
                   threads: int | None = 1, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Iterator[Any]:
    """ImageResults for PATHS, scored by ACTORS Ray actors (each loads MODEL once) and yielded in input order.
    ADDRESS: "local" starts a Ray instance on this machine; else a cluster address ("auto", "ray://host:10001")."""
    try:
        import ray
    except ImportError as exc:
        from .errors import BackendUnavailable

        raise BackendUnavailable("Ray is not installed: pip install 'lmliqa[ray]'") from exc
    from .runtimes.base import ImageResult

    started = not ray.is_initialized()
    if started:
        if address == "local":
            ray.init(num_cpus=max(actors, 1), include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True           # rows come back in input order
        ds = ray.data.from_items([{"path": p} for p in paths])
        out = ds.map_batches(ScoreBatch, batch_size=batch_size, concurrency=actors, num_cpus=1, batch_format="numpy",
                             fn_constructor_kwargs={"model": None if model in (None, "default") else str(model),
                                                    "target": target, "precision": precision, "threads": threads,
                                                    "max_pixels": max_pixels})
        for row in out.iter_rows():
            ok = not row["error"]
            yield ImageResult(str(row["image"]), float(row["score"]) if ok else None, [], str(row["error"]),
                              str(row["error_kind"]))
    finally:
        if started:               # the instance (or the connection) this call made
            ray.shutdown()
