"""The ``workbench`` command line, called the way a user types it."""

from __future__ import annotations

import nbformat
import pytest

from workbench.cli import main


def _nb(path):
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("k = 10  # list length", metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell(
                "from workbench import runs\np = runs.start(parameters=globals())\nruns.record('k', p.k)"
            ),
        ]
    )
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nbformat.write(nb, path)
    return path


def test_run_one_notebook_with_a_parameter(tmp_path, capsys):
    nb = _nb(tmp_path / "05_demo.ipynb")
    assert main(["run", str(nb), "-p", "k", "20", "--runs-dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "ok     05_demo" in out and "report.md" in out
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    assert (tmp_path / "runs" / "results.sqlite").exists()  # the run is in the results store
    from workbench import runs

    assert runs.read(run_dir / "05_demo.json") == {"k": 20}


def test_unknown_parameter_fails_before_running_and_lists_declared(tmp_path, capsys):
    nb = _nb(tmp_path / "05_demo.ipynb")
    assert main(["run", str(nb), "-p", "kk", "20", "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "['kk']" in err and "['k']" in err
    assert not (tmp_path / "runs").exists()


def test_missing_notebook_and_unknown_dataset_are_clear_errors(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.ipynb")]) == 2
    assert "no such notebook" in capsys.readouterr().err
    assert main(["download", "ml-42"]) == 2
    assert "choose one of" in capsys.readouterr().err


# --------------------------------------------------------------------------- serve

SERVE = ["serve", "--dataset", "synthetic", "--synthetic-size", "tiny"]


@pytest.fixture
def served(monkeypatch):
    """Calls of ``workbench serve`` stop where the HTTP server would start: the
    :class:`RecommendationService` it would serve is appended here instead."""
    from workbench.serving import app

    out = []
    monkeypatch.setattr(app, "run", lambda service, **where: out.append((service, where)))
    return out


def test_serve_builds_any_registered_model_with_its_options(served):
    assert main([*SERVE, "--model", "EASE", "-o", "reg", "123", "--port", "8123"]) == 0
    ((service, where),) = served
    model = service.model.model
    assert type(model).__name__ == "EASE" and model.config.reg == 123 and model.config.device == "cpu"
    assert where == {"host": "127.0.0.1", "port": 8123, "token": None, "access_log": False}
    assert main([*SERVE, "--model", "itemknn"]) == 0  # names ignore case
    assert type(served[-1][0].model.model).__name__ == "ItemKNN"


def test_serve_beyond_loopback_warns_what_it_exposes_and_takes_a_write_token(served, capsys, monkeypatch):
    monkeypatch.delenv("WORKBENCH_TOKEN", raising=False)
    assert main([*SERVE, "--model", "popularity"]) == 0
    assert "warning" not in capsys.readouterr().err and served[-1][1]["token"] is None  # loopback: quiet
    assert main([*SERVE, "--model", "popularity", "--host", "0.0.0.0"]) == 0
    err = capsys.readouterr().err
    assert "0.0.0.0" in err and "POST /interactions without a token" in err and "/docs" in err, err
    monkeypatch.setenv("WORKBENCH_TOKEN", "from-env")
    assert main([*SERVE, "--model", "popularity", "--host", "0.0.0.0", "--access-log"]) == 0
    err = capsys.readouterr().err
    assert "requires the token" in err and "without a token" not in err and "from-env" not in err
    assert served[-1][1]["token"] == "from-env" and served[-1][1]["access_log"] is True
    assert main([*SERVE, "--model", "popularity", "--token", "from-flag"]) == 0
    assert served[-1][1]["token"] == "from-flag"


def test_serve_passes_epochs_and_max_length_to_a_sequential_model(served):
    args = [*SERVE, "--model", "sasrec", "--epochs", "1", "--max-length", "7", "-o", "embedding_size", "16"]
    assert main(args) == 0
    model = served[-1][0].model.model
    assert type(model).__name__ == "SASRec"
    assert (model.config.epochs, model.config.max_length, model.config.embedding_size) == (1, 7, 16)
    assert model.config.device == "cpu" and model.config.seed == 0


def test_serve_unknown_option_is_a_clean_error(served, capsys):
    assert main([*SERVE, "--model", "ease", "-o", "regularisation", "300"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "['regularisation']" in err and "'reg'" in err
    assert "Traceback" not in err and not served


def test_serve_unknown_model_is_a_clean_error(served, capsys):
    assert main([*SERVE, "--model", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "unknown model 'nope'" in err and "EASE" in err
    assert not served


def test_serve_a_checkpoint_of_whichever_model_wrote_it(served, tmp_path, tiny_encoder_path):
    """A sequential checkpoint is loaded onto ``--device``; a two-tower one (which scores
    on the CPU and takes no device) is loaded as it is."""
    from workbench import models
    from workbench.data import datasets
    from workbench.models.text.encoder import load_encoder

    data = datasets.load("synthetic", size="tiny", seed=0)
    models.build("SASRec", epochs=1, max_length=8, embedding_size=16, device="cpu").fit(data.interactions).save(
        tmp_path / "sasrec"
    )
    encoder = load_encoder(tiny_encoder_path, device="cpu")
    tower = models.build("TwoTower", items=data.items, encoder=encoder, epochs=1, freeze=1, device="cpu")
    tower.fit(data.interactions).save(tmp_path / "tower")
    for folder, name in (("sasrec", "SASRec"), ("tower", "TwoTower")):
        assert main([*SERVE, "--checkpoint", str(tmp_path / folder)]) == 0
        assert type(served[-1][0].model.model).__name__ == name
