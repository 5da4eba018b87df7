"""Every model by name (workbench.models.registry): build, options, is_sequential, load a
checkpoint whichever model wrote it, and a light ``workbench.models.base``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from workbench import models
from workbench.models import EASE, MODELS, SASRec, TwoTower
from workbench.models.config import option_names

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: a few non-default options per model (valid ones)
OPTIONS = {
    "Popularity": {},
    "GenrePopularity": {},
    "ItemKNN": {"k": 7},
    "EASE": {"reg": 12.5, "device": "cpu"},
    "IALS": {"factors": 8, "device": "cpu"},
    "BPR": {"factors": 8, "device": "cpu"},
    "Blend": {"weights": (0.25, 0.75), "step": 0.5},
    "SASRec": {"epochs": 2, "max_length": 16, "device": "cpu"},
    "BERT4Rec": {"epochs": 2, "mask_probability": 0.4, "device": "cpu"},
    "FrozenText": {"max_length": 16},
    "TwoTower": {"epochs": 1, "freeze": 1, "device": "cpu"},
    "Hybrid": {"weight": 0.5, "neighbours": 5},
    "TwoStage": {"candidates": 50},
}
NAMES = sorted(MODELS)


def test_every_model_is_registered_by_its_class_name():
    assert set(OPTIONS) == set(MODELS)
    assert all(cls.__name__ == name for name, cls in MODELS.items())
    assert all(issubclass(cls, models.Recommender) for cls in MODELS.values())


@pytest.mark.parametrize("name", NAMES)
def test_build_in_any_case_equals_constructing_the_class(name, dependencies):
    cls = MODELS[name]
    direct = cls(**dependencies(name), **OPTIONS[name])
    for spelled in (name, name.lower(), name.upper()):
        built = models.build(spelled, **dependencies(name), **OPTIONS[name])
        assert type(built) is cls and built.config == direct.config
        assert models.model_class(spelled) is cls
    built = models.build(name, **dependencies(name), **OPTIONS[name])
    for argument, value in dependencies(name).items():  # constructor arguments reach the model
        if argument == "items":
            pd.testing.assert_frame_equal(built.catalogue, value.reset_index(drop=True))
        else:
            assert getattr(built, argument) is value or getattr(built, argument) == value


def test_build_passes_options_through_and_refuses_unknown_ones():
    assert models.build("ease", reg=300.0).config == EASE(reg=300.0).config
    with pytest.raises(TypeError, match=r"no_such_option.*'reg'"):
        models.build("EASE", no_such_option=1)
    with pytest.raises(ValueError, match="reg must be > 0"):
        models.build("EASE", reg=0.0)


def test_an_unknown_name_lists_every_name():
    for call in (
        lambda: models.build("NoSuchModel"),
        lambda: models.options("nosuchmodel"),
        lambda: models.is_sequential("x"),
        lambda: models.model_class("SASRecc"),
    ):
        with pytest.raises(ValueError, match="unknown model") as info:
            call()
        assert all(name in str(info.value) for name in MODELS)


@pytest.mark.parametrize("name", NAMES)
def test_options_are_the_config_fields_in_order(name):
    assert models.options(name) == models.options(name.lower()) == option_names(MODELS[name].config_class)
    assert set(OPTIONS[name]) <= set(models.options(name))


def test_options_known_answers():
    assert models.options("EASE") == ("reg", "device")
    assert models.options("popularity") == ()
    assert models.options("BLEND") == ("weights", "step", "seed")
    assert "mask_probability" in models.options("BERT4Rec") and "mask_probability" not in models.options("SASRec")


def test_is_sequential_only_for_the_next_item_transformers():
    assert {name for name in MODELS if models.is_sequential(name)} == {"SASRec", "BERT4Rec"}
    assert models.is_sequential("sasrec") and not models.is_sequential("ease")


# -- load -----------------------------------------------------------------------------------


def test_load_round_trips_a_sasrec_checkpoint(tiny_data, tmp_path):
    fitted = models.build("SASRec", epochs=1, embedding_size=16, layers=1, max_length=8, device="cpu").fit(
        tiny_data.interactions
    )
    path = fitted.save(tmp_path / "sasrec")
    back = models.load(path)
    assert type(back) is SASRec and back.config == fitted.config
    assert back.result_.best_epoch == fitted.result_.best_epoch
    users = np.arange(len(fitted.users))
    assert torch.equal(back.score(users), fitted.score(users))
    pd.testing.assert_frame_equal(back.recommend([1, 2], k=5), fitted.recommend([1, 2], k=5))
    assert models.load(path, device="cpu").config.device == "cpu"  # options go to the model's load


def test_load_round_trips_a_two_tower_checkpoint(tiny_data, tiny_encoder, tmp_path):
    fitted = models.build("TwoTower", items=tiny_data.items, encoder=tiny_encoder, epochs=1, freeze=1, device="cpu")
    fitted.fit(tiny_data.interactions)
    path = fitted.save(tmp_path / "two-tower")
    rows = np.arange(5)
    for options in ({}, {"encoder": tiny_encoder}):
        back = models.load(path, **options)
        assert type(back) is TwoTower and back.config == fitted.config
        assert back.result_.best_epoch == fitted.result_.best_epoch
        torch.testing.assert_close(back.score(rows), fitted.score(rows))
        pd.testing.assert_frame_equal(back.recommend([1, 2], k=5), fitted.recommend([1, 2], k=5))
    assert hasattr(back, "network_")  # with the encoder, the trainable network comes back too


def test_load_refuses_a_folder_that_is_not_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a checkpoint"):
        models.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model": "NoSuchModel", "format": 1}))
    with pytest.raises(ValueError, match="unknown model 'NoSuchModel'"):
        models.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model": "EASE", "format": 1}))
    with pytest.raises(ValueError, match="EASE has no checkpoint format"):
        models.load(tmp_path)


# -- a light base --------------------------------------------------------------------------


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_importing_the_base_does_not_import_the_models():
    out = run_python(
        "import sys\n"
        "import workbench.models.base\n"
        "heavy = ('workbench.models.sequential', 'workbench.models.text', 'workbench.models.registry')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    assert out == "[]"


def test_models_are_importable_from_the_package_on_first_use():
    out = run_python(
        "import sys\n"
        "from workbench.models import EASE\n"
        "import workbench.models as m\n"
        "print(EASE.__module__, 'workbench.models.registry' in sys.modules, m.build is m.registry.build)\n"
    )
    assert out == "workbench.models.ease True True"
    with pytest.raises(AttributeError, match="NoSuchThing"):
        models.NoSuchThing  # noqa: B018
    assert {"EASE", "SASRec", "build", "load", "MODELS"} <= set(dir(models))
