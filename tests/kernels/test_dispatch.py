"""Kernel dispatch: the env / config switch and its errors."""

from __future__ import annotations

import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.kernels import (
    configure_kernels,
    dispatch,
    kernel_mode,
    kernel_mode_override,
    set_kernel_mode,
    use_triton,
)
from pipeline.model.config import ModelConfig


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    set_kernel_mode(None)
    yield
    set_kernel_mode(None)


def test_auto_uses_reference_on_cpu():
    assert kernel_mode() == "auto"
    assert not use_triton(torch.zeros(2))


def test_env_switch(monkeypatch):
    monkeypatch.setenv(dispatch.ENV_VAR, "reference")
    assert kernel_mode() == "reference" and not use_triton(torch.zeros(2))
    monkeypatch.setenv(dispatch.ENV_VAR, "bogus")
    with pytest.raises(ConfigError, match="POSECAP_KERNELS"):
        kernel_mode()


def test_forced_triton_on_cpu_without_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(dispatch.ENV_VAR, "triton")
    with pytest.raises(ConfigError, match="CUDA tensors|not importable"):
        use_triton(torch.zeros(2))


def test_config_switch_overrides_env(monkeypatch):
    monkeypatch.setenv(dispatch.ENV_VAR, "triton")
    assert configure_kernels(ModelConfig(kernels="reference")) == "reference"
    assert not use_triton(torch.zeros(2))
    assert configure_kernels(ModelConfig()) == "triton"  # "auto" in the config leaves the env in charge
    with kernel_mode_override("reference"):
        assert kernel_mode() == "reference"
    assert kernel_mode() == "triton"
