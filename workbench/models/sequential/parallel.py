"""Fit several sequential models side by side, one process each.

On a CPU, one small transformer's training step is a chain of small ops that one core
runs best (more intra-op threads spin and wait; see notebook 04's ``threads``). Two
models trained one after the other leave the second core idle; trained in two processes
they take the time of the slower one. Each process fits exactly as :meth:`fit` would
here (same seed, same thread count, so the same weights), saves a checkpoint, and the
parent loads it back: what comes back is the model a plain ``fit`` returns.

    fitted = fit_side_by_side({"SASRec": SASRec(...), "BERT4Rec": BERT4Rec(...)}, train, validation=valid)

Processes are started with ``spawn`` (no state is inherited from a kernel that may hold
threads or a GPU context): in a script, call this under ``if __name__ == "__main__":``, as
for any spawned process (a notebook needs nothing). A model whose process fails raises
:class:`FitFailed` naming it, after the other processes are stopped; so does a process
that dies without a word (killed for memory, say). With ``processes=1`` the models are
fitted here, in turn.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import tempfile
import traceback
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from workbench.models.sequential.base import SequentialModel


class FitFailed(RuntimeError):
    """A model's fitting process failed: its name and the child's traceback."""


def fit_side_by_side(
    models: Mapping[str, SequentialModel],
    interactions: pd.DataFrame,
    *,
    validation: pd.DataFrame | None = None,
    processes: int | None = None,
    progress: bool = True,
) -> dict[str, SequentialModel]:
    """Fit each of ``models`` (name -> unfitted model) on ``interactions`` with early
    stopping on ``validation``, at most ``processes`` at once (default: one per model, at
    most one per CPU), each process on this process's torch thread count. Returns the
    fitted models under the same names, in the same order; ``progress`` shows one bar per
    model, updated as each epoch ends."""
    if not models:
        return {}
    bad = [name for name, model in models.items() if not isinstance(model, SequentialModel)]
    if bad:
        raise TypeError(f"fit_side_by_side fits sequential models (SASRec, BERT4Rec); got {bad}")
    processes = min(len(models), os.cpu_count() or 1) if processes is None else processes
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    if processes == 1:
        return {
            name: model.fit(interactions, validation=validation, progress=progress) for name, model in models.items()
        }
    with tempfile.TemporaryDirectory(prefix="side-by-side-") as folder:
        _run(models, interactions, validation, processes, Path(folder), progress)
        return {name: type(model).load(Path(folder) / name) for name, model in models.items()}


def _run(models, interactions, validation, processes: int, folder: Path, progress: bool) -> None:
    """Start the processes (``processes`` at a time) and relay their epochs to the bars
    until each has saved its model to ``folder / name``."""
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    threads = torch.get_num_threads()
    waiting = list(models)
    running: dict[str, multiprocessing.process.BaseProcess] = {}
    bars = {
        name: tqdm(total=models[name].config.epochs, desc=name, disable=not progress, leave=True) for name in models
    }
    try:
        while waiting or running:
            while waiting and len(running) < processes:
                name = waiting.pop(0)
                args = (name, models[name], interactions, validation, folder / name, threads, messages)
                running[name] = context.Process(target=_fit_one, args=args, name=f"fit-{name}", daemon=True)
                running[name].start()
            try:
                kind, name, payload = messages.get(timeout=0.5)
            except queue.Empty:
                _check_alive(running)
                continue
            if kind == "epoch":
                bars[name].update(int(payload["epoch"]) - bars[name].n)
                bars[name].set_postfix(loss=f"{payload['train_loss']:.3f}", valid=f"{payload['best_score']:.4f}")
            elif kind == "done":
                running.pop(name).join()
                bars[name].close()
            else:
                raise FitFailed(f"fitting {name} failed in its process:\n{payload}")
    finally:
        for process in running.values():
            if process.pid is not None:  # started
                process.terminate()
                process.join()
        for bar in bars.values():
            bar.close()


def _check_alive(running: dict) -> None:
    """A process that ended without reporting (killed, crashed in C) is a failure."""
    for name, process in running.items():
        if not process.is_alive() and process.exitcode not in (None, 0):
            raise FitFailed(f"the process fitting {name} died with exit code {process.exitcode} and no report")


def _fit_one(name, model, interactions, validation, path, threads, messages) -> None:
    """In the child: fit on ``threads`` torch threads, save to ``path``, report."""
    torch.set_num_threads(threads)

    def report(row: dict) -> None:
        messages.put(("epoch", name, {key: row[key] for key in ("epoch", "train_loss", "best_score")}))

    try:
        model.fit(interactions, validation=validation, on_epoch=report)
        model.save(path)
    except BaseException:
        messages.put(("error", name, traceback.format_exc()))
        raise
    messages.put(("done", name, None))
