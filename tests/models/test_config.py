"""The constructor convention, for every registered model: keyword options or a config
object (never both, never positional), unknown options named, and a signature and repr
that show the options (workbench.models.config)."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from workbench.models import MODELS
from workbench.models.config import make_config, option_names

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: options that differ from every default, valid for the model (none for the popularity baselines)
OPTIONS = {
    "Popularity": {},
    "GenrePopularity": {},
    "ItemKNN": {"k": 7},
    "EASE": {"reg": 12.5, "device": "cpu"},
    "IALS": {"factors": 8, "epochs": 2, "alpha": 2.0, "device": "cpu"},
    "BPR": {"factors": 8, "epochs": 2, "batch_size": 16, "device": "cpu"},
    "Blend": {"weights": (0.25, 0.75), "step": 0.5, "seed": 3},
    "SASRec": {"epochs": 2, "max_length": 16, "embedding_size": 32, "device": "cpu"},
    "BERT4Rec": {"epochs": 2, "max_length": 16, "mask_probability": 0.4, "device": "cpu"},
    "FrozenText": {"max_length": 16, "batch_size": 8},
    "TwoTower": {"epochs": 1, "freeze": 1, "loss": "bce", "device": "cpu"},
    "Hybrid": {"weight": 0.5, "neighbours": 5, "target": "cold"},
    "TwoStage": {"candidates": 50},
}
#: what each model is built *from* (named constructor arguments, not options)
OWN_ARGUMENTS = {
    "GenrePopularity": ["items"],
    "Blend": ["models"],
    "FrozenText": ["items", "encoder"],
    "TwoTower": ["items", "encoder"],
    "Hybrid": ["cf", "text"],
    "TwoStage": ["retriever", "ranker"],
}
NAMES = sorted(MODELS)


def test_the_tables_here_cover_every_registered_model():
    assert set(OPTIONS) == set(MODELS)
    assert set(OWN_ARGUMENTS) <= set(MODELS)
    for name, options in OPTIONS.items():
        assert set(options) <= set(option_names(MODELS[name].config_class)), name


@pytest.mark.parametrize("name", NAMES)
def test_keywords_and_a_config_object_give_equal_configs(name, dependencies):
    cls = MODELS[name]
    options = OPTIONS[name]
    by_keywords = cls(**dependencies(name), **options)
    by_config = cls(**dependencies(name), config=cls.config_class(**options))
    assert by_keywords.config == by_config.config == cls.config_class(**options)
    assert type(by_keywords.config) is cls.config_class
    for option, value in options.items():
        assert getattr(by_keywords.config, option) == value
    assert cls(**dependencies(name)).config == cls.config_class()  # nothing given: every default


@pytest.mark.parametrize("name", NAMES)
def test_configs_are_frozen_keyword_only_dataclasses(name):
    config_class = MODELS[name].config_class
    assert dataclasses.is_dataclass(config_class)
    config = config_class()
    for field in option_names(config_class):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(config, field, getattr(config, field))
    if option_names(config_class):
        with pytest.raises(TypeError):
            config_class(getattr(config, option_names(config_class)[0]))


@pytest.mark.parametrize("name", NAMES)
def test_keywords_and_config_at_once_is_a_type_error(name, dependencies):
    cls = MODELS[name]
    options = OPTIONS[name] or {"anything": 1}
    with pytest.raises(TypeError, match="not both"):
        cls(**dependencies(name), config=cls.config_class(), **options)


@pytest.mark.parametrize("name", NAMES)
def test_an_unknown_option_is_a_type_error_naming_the_accepted_ones(name, dependencies):
    cls = MODELS[name]
    with pytest.raises(TypeError, match="no_such_option") as info:
        cls(**dependencies(name), no_such_option=1)
    message = str(info.value)
    assert name in message
    for option in option_names(cls.config_class):
        assert repr(option) in message, option


@pytest.mark.parametrize("name", NAMES)
def test_a_config_of_another_model_is_a_type_error(name, dependencies):
    cls = MODELS[name]
    other = next(c for c in MODELS.values() if c.config_class is not cls.config_class)
    with pytest.raises(TypeError, match=cls.config_class.__name__):
        cls(**dependencies(name), config=other.config_class())


@pytest.mark.parametrize("name", NAMES)
def test_a_positional_config_is_a_type_error(name, dependencies):
    cls = MODELS[name]
    arguments = dependencies(name)
    positional = [arguments.pop("items")] if "items" in arguments else []
    with pytest.raises(TypeError):
        cls(*positional, cls.config_class(), **arguments)


@pytest.mark.parametrize("name", NAMES)
def test_signature_lists_the_options_with_their_defaults(name):
    cls = MODELS[name]
    parameters = inspect.signature(cls).parameters
    options = option_names(cls.config_class)
    assert list(parameters) == [*OWN_ARGUMENTS.get(name, []), *options, "config"]
    for field in dataclasses.fields(cls.config_class):
        parameter = parameters[field.name]
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY
        assert parameter.default == field.default, field.name
    assert parameters["config"].kind is inspect.Parameter.KEYWORD_ONLY and parameters["config"].default is None
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


@pytest.mark.parametrize("name", NAMES)
def test_repr_shows_the_options(name, dependencies):
    cls = MODELS[name]
    model = cls(**dependencies(name), **OPTIONS[name])
    text = repr(model)
    assert text.startswith(f"{name}(")
    for option in option_names(cls.config_class):
        assert f"{option}={getattr(model.config, option)!r}" in text, (option, text)


def test_make_config_checks_in_one_place():
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Config:
        size: int = 3

        def __post_init__(self):
            if self.size < 1:
                raise ValueError("size must be >= 1")

    assert make_config(Config, None, {}, owner="M") == Config()
    assert make_config(Config, None, {"size": 5}, owner="M") == Config(size=5)
    given = Config(size=2)
    assert make_config(Config, given, {}, owner="M") is given
    with pytest.raises(TypeError, match=r"M: unknown option\(s\) \['sise'\]; it takes \['size'\]"):
        make_config(Config, None, {"sise": 5}, owner="M")
    with pytest.raises(TypeError, match="not both"):
        make_config(Config, given, {"size": 5}, owner="M")
    with pytest.raises(ValueError, match="size must be >= 1"):  # a value out of range is the config's own error
        make_config(Config, None, {"size": 0}, owner="M")


def test_blend_components_are_constructor_arguments_not_options(dependencies):
    models = dependencies("Blend")["models"]
    blend = MODELS["Blend"](models=models, weights=(0.5, 0.5))
    assert blend.models == models and option_names(MODELS["Blend"].config_class) == ("weights", "step", "seed")
    assert [type(m).__name__ for m in MODELS["Blend"]().models] == ["EASE", "IALS"]  # the default components
