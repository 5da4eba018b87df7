"""Peer runner: RecBole 1.2.1's SASRec, BERT4Rec and EASE on our exact splits.

``python run_recbole.py SPEC.json`` (see ``exchange.py``) with the ``.venv-peers``
interpreter (RecBole needs numpy < 2 and setuptools < 80). Our ``train/valid/test.csv``
become RecBole atomic files in its pre-split "benchmark" mode (``benchmark_filename``):

- sequential models: every prefix of every training sequence is one training row
  (``item_id_list`` -> ``item_id``), which is how RecBole augments sequences itself;
  validation rows read the training history, test rows training + validation. Lists
  keep the newest ``max_length`` items.
- EASE: the training pairs; RecBole's EASE solves in its constructor (fit = construction).

RecBole trains with its own trainer (``_train_epoch``) until the wall-clock
``budget_s`` of training is spent -- the last epoch is cut at the budget, since one
epoch over every prefix can outlast a whole budget -- validating every
``validate_every_s`` training seconds (mid-epoch too; validation is kept off the
training clock) and after each (possibly cut) epoch, and keeping the best state by
nDCG@10 on the validation users. When the budget ends inside the first epoch, RecBole's
quality is that of its best validated state so far: usually the state at the budget's end. Its
top-k for the validation (each epoch) and test users is computed here from
``full_sort_predict`` with the user's whole history masked, as ours is, and written
back in our item ids; the main process scores it with our metrics.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
from exchange import limit_threads, read_spec, topk_excluding, write_result, write_topk


def _read(folder: Path, name: str):
    import pandas as pd

    return pd.read_csv(folder / f"{name}.csv").sort_values(["user_id", "timestamp"], kind="stable")


def _seq_rows(histories: dict, targets, max_length: int) -> list[str]:
    rows = []
    for user, item in zip(targets["user_id"], targets["item_id"]):
        history = histories.get(user, [])[-max_length:]
        rows.append(f"{user}\t{' '.join(map(str, history))}\t{item}")
    return rows


def write_atomic_files(spec: dict, folder: Path) -> dict:
    """Our CSVs -> ``folder/wb/wb.{train,valid,test}.inter``; returns the full histories
    (train + valid, time-ordered item ids) per user, for masking."""
    train, valid, test = (_read(spec["input"], n) for n in ("train", "valid", "test"))
    (folder / "wb").mkdir(parents=True, exist_ok=True)
    path = folder / "wb" / "wb.{}.inter"
    by_user = {u: g.tolist() for u, g in train.groupby("user_id")["item_id"]}
    if spec["model"] == "EASE":
        header = "user_id:token\titem_id:token"
        pairs = {
            n: [f"{u}\t{i}" for u, i in zip(d["user_id"], d["item_id"])] for n, d in (("train", train), ("test", test))
        }
        pairs["valid"] = pairs["test"]  # RecBole wants the file; nothing is chosen on it (EASE has no epochs)
        for name, rows in pairs.items():
            Path(str(path).format(name)).write_text("\n".join([header, *rows]) + "\n")
        return by_user
    length = spec["params"]["max_length"]
    header = "user_id:token\titem_id_list:token_seq\titem_id:token"
    prefixes = [
        f"{u}\t{' '.join(map(str, s[max(0, t - length) : t]))}\t{s[t]}"
        for u, s in by_user.items()
        for t in range(1, len(s))
    ]
    Path(str(path).format("train")).write_text("\n".join([header, *prefixes]) + "\n")
    Path(str(path).format("valid")).write_text("\n".join([header, *_seq_rows(by_user, valid, length)]) + "\n")
    history = {u: by_user.get(u, []) + [i] for u, i in zip(valid["user_id"], valid["item_id"])}
    history = {**by_user, **history}
    Path(str(path).format("test")).write_text("\n".join([header, *_seq_rows(history, test, length)]) + "\n")
    return {"train": by_user, "history": history, "n_train_rows": len(prefixes)}


def recbole_config(spec: dict, folder: Path) -> dict:
    p, sequential = spec["params"], spec["model"] != "EASE"
    config = {
        "data_path": str(folder),
        "dataset": "wb",
        "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": ["user_id", "item_id_list", "item_id"] if sequential else ["user_id", "item_id"]},
        "device": "cpu",
        "use_gpu": False,
        "seed": p.get("seed", 0),
        "reproducibility": True,
        "show_progress": False,
        "checkpoint_dir": str(spec["output"] / "checkpoints"),
        "metrics": ["NDCG", "Hit"],
        "topk": [spec["k"]],
        "valid_metric": f"NDCG@{spec['k']}",
        "eval_args": {
            "order": "TO" if sequential else "RO",
            "mode": "full",
            "group_by": "user",
            "split": {"RS": [1, 0, 0]},
        },
    }
    if not sequential:
        return {**config, "reg_weight": p["reg"]}
    config.update(
        alias_of_item_id=["item_id_list"],
        MAX_ITEM_LIST_LENGTH=p["max_length"],
        hidden_size=p["embedding_size"],
        inner_size=4 * p["embedding_size"],
        n_layers=p["layers"],
        n_heads=p["heads"],
        hidden_dropout_prob=p["dropout"],
        attn_dropout_prob=p["dropout"],
        loss_type="CE",
        train_neg_sample_args=None,
        train_batch_size=p["batch_size"],
        learning_rate=p["learning_rate"],
        epochs=10**6,
    )
    if spec["model"] == "BERT4Rec":
        config["mask_ratio"] = p["mask_probability"]
    return config


def rank_rows(model, dataset, rows, histories: dict, k: int, users_field: str) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (our item ids) for the rows of ``dataset.inter_feat`` with each user's whole
    history masked; returns (user ids, (n, k) item ids)."""
    import torch

    inter = dataset.inter_feat
    tokens = np.array([int(t) if t != "[PAD]" else -1 for t in dataset.field2id_token["item_id"]])
    user_tokens = dataset.field2id_token[users_field]
    users, tops = [], []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), 256):
            batch = inter[rows[start : start + 256]]
            scores = model.full_sort_predict(batch).view(len(batch), -1).numpy()  # (B, n_items + 1), 0 = [PAD]
            ids = [int(user_tokens[u]) for u in batch[users_field].numpy()]
            seen = [
                np.concatenate([[0], dataset.token2id("item_id", [str(i) for i in histories.get(u, [])])]).astype(int)
                for u in ids
            ]
            top = topk_excluding(scores, seen, k)
            users.extend(ids)
            tops.append(np.where(top >= 0, tokens[np.maximum(top, 0)], -1))
    return np.array(users), np.concatenate(tops)


def _ndcg_one(top: np.ndarray, target: np.ndarray) -> float:
    """Mean nDCG@k with one held-out item per row (for choosing the epoch only)."""
    hit = top == target[:, None]
    return float((hit / np.log2(np.arange(2, top.shape[1] + 2))).sum(1).mean())


class Budget:
    """A training clock for RecBole's epochs: wraps a loader (see :meth:`epoch`) so that
    training stops once ``seconds`` of it are spent -- mid-epoch if need be -- and
    ``checkpoint()`` runs every ``every`` training seconds (0: never), its own time kept
    off the clock. ``trained``: training seconds so far; ``rows``: prefix rows trained on."""

    def __init__(self, seconds: float, every: float, checkpoint):
        self.seconds, self.every, self.checkpoint = seconds, every, checkpoint
        self.trained, self.rows, self.cut = 0.0, 0, False
        self.next_check = every if every > 0 else float("inf")

    def spent(self) -> bool:
        return self.trained >= self.seconds

    def epoch(self, loader) -> _Epoch:
        return _Epoch(self, loader)


class _Epoch:
    """One pass over ``loader`` on ``budget``'s clock (``len`` is the loader's)."""

    def __init__(self, budget: Budget, loader):
        self.budget, self.loader, self.rows = budget, loader, 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        b, t0, base = self.budget, time.perf_counter(), self.budget.trained
        for batch in self.loader:  # resumed only once the previous batch's step is done
            b.trained = base + time.perf_counter() - t0
            if b.trained >= b.seconds:
                b.cut = True
                return
            if b.trained >= b.next_check:
                b.checkpoint(complete=False)
                b.next_check = b.trained + b.every
                t0, base = time.perf_counter(), b.trained
            b.rows, self.rows = b.rows + len(batch), self.rows + len(batch)
            yield batch
        b.trained = base + time.perf_counter() - t0


def train_within_budget(spec, trainer, model, data, histories, valid_targets) -> dict:
    """RecBole epochs until ``budget_s`` seconds of training are spent, validating on the
    validation users every ``validate_every_s`` training seconds (0: only at epoch ends)
    and at the end of each (possibly cut) epoch; the best validated state is kept.
    ``curve``: one point per validation, with cumulative training ``seconds``."""
    train_data, valid_ds = data
    p, k = spec["params"], spec["k"]
    rows = np.arange(len(valid_ds.inter_feat))
    curve, best, epoch = [], {"score": -1.0}, 0

    def checkpoint(*, complete: bool) -> None:
        users, top = rank_rows(model, valid_ds, rows, histories["train"], k, "user_id")
        score = _ndcg_one(top, np.array([valid_targets[u] for u in users]))
        point = len(curve) + 1
        curve.append(
            {
                "point": point,
                "epoch": epoch + 1,
                "seconds": budget.trained,
                "rows": budget.rows,
                "epochs_done": budget.rows / histories["n_train_rows"],
                "complete": complete,
                "valid_ndcg": score,
            }
        )
        write_topk(spec["output"], f"valid_point{point}", users, top)
        if score > best["score"]:
            best.update(score=score, state=copy.deepcopy(model.state_dict()), point=point)
        model.train()

    budget = Budget(p["budget_s"], p.get("validate_every_s", 0), checkpoint)
    while not budget.spent():
        loader = budget.epoch(train_data)
        trainer._train_epoch(loader, epoch, show_progress=False)
        if loader.rows == 0:
            break
        if not curve or curve[-1]["rows"] < budget.rows:
            checkpoint(complete=not budget.cut)
        epoch += 1
    model.load_state_dict(best["state"])
    return {"curve": curve, "best_point": best["point"]}


def main() -> None:
    spec = read_spec()
    limit_threads(spec["threads"])
    import pandas as pd
    import recbole
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    torch.set_num_threads(spec["threads"])
    folder = spec["output"] / "atomic"
    histories = write_atomic_files(spec, folder)
    config = Config(model=spec["model"], dataset="wb", config_dict=recbole_config(spec, folder))
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    start = time.perf_counter()
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    result = {"versions": {"recbole": recbole.__version__, "torch": torch.__version__, "numpy": np.__version__}}
    test_ds = test_data._dataset
    if spec["model"] == "EASE":
        result["fit_seconds"] = time.perf_counter() - start
        result["epochs"], masks = None, histories
        rows = np.unique(test_ds.inter_feat["user_id"].numpy(), return_index=True)[1]
    else:
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
        valid = pd.read_csv(spec["input"] / "valid.csv")
        targets = dict(zip(valid["user_id"], valid["item_id"]))
        result.update(train_within_budget(spec, trainer, model, (train_data, valid_data._dataset), histories, targets))
        result["fit_seconds"] = time.perf_counter() - start
        last = result["curve"][-1]
        result["train_seconds"], result["epochs"] = last["seconds"], last["epochs_done"]
        result["training_rows_per_epoch"] = histories["n_train_rows"]
        result["sequences_per_second"] = last["rows"] / last["seconds"]
        masks, rows = histories["history"], np.arange(len(test_ds.inter_feat))
    t0 = time.perf_counter()
    users, top = rank_rows(model, test_ds, rows, masks, spec["k"], "user_id")
    result["recommend_seconds"] = time.perf_counter() - t0
    write_topk(spec["output"], "topk", users, top)
    write_result(spec["output"], result)


if __name__ == "__main__":
    main()
