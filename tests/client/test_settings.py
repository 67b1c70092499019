"""Settings promises: explicit arguments beat the environment, which beats the defaults; bad values are named."""

from __future__ import annotations

import pytest
from hy3d_client.errors import ConfigurationError
from hy3d_client.r2 import DEFAULT_URL_EXPIRY_S, MAX_URL_EXPIRY_S, R2Settings
from hy3d_client.retry import DEFAULT_RETRY_ATTEMPTS, RetryPolicy
from hy3d_client.settings import DEFAULT_TIMEOUT_S, TritonSettings

R2_ENV = {"CF_R2_ACCOUNT_ID": "0123456789abcdef0123456789abcdef", "CF_R2_ACCESS_KEY": "AKIDEXAMPLE0001",
          "CF_R2_SECRET_KEY": "wJalrXUtnFEMI-example-secret", "CF_R2_BUCKET": "assets"}


def test_triton_defaults_to_grpc_on_localhost_8001():
    settings = TritonSettings.resolve(environ={})
    assert (settings.url, settings.protocol, settings.timeout_s, settings.model_name) == (
        "localhost:8001", "grpc", DEFAULT_TIMEOUT_S, "hy3d_ensemble")


def test_http_protocol_from_the_environment_defaults_to_port_8000():
    settings = TritonSettings.resolve(environ={"HY3D_TRITON_PROTOCOL": "HTTP"})
    assert (settings.url, settings.protocol) == ("localhost:8000", "http")


def test_environment_address_is_used_and_explicit_arguments_win():
    env = {"HY3D_TRITON_URL": "triton.internal:9001", "HY3D_TRITON_TIMEOUT_S": "30"}
    assert TritonSettings.resolve(environ=env).url == "triton.internal:9001"
    assert TritonSettings.resolve(environ=env).timeout_s == 30.0
    explicit = TritonSettings.resolve("10.0.0.5:8000", "http", 5, environ=env)
    assert (explicit.url, explicit.protocol, explicit.timeout_s) == ("10.0.0.5:8000", "http", 5.0)


def test_https_scheme_turns_tls_on_and_is_stripped():
    settings = TritonSettings.resolve("https://triton.example.com:443", "http", environ={})
    assert (settings.url, settings.ssl) == ("triton.example.com:443", True)


@pytest.mark.parametrize(("kwargs", "env", "named"), [
    ({"protocol": "websocket"}, {}, "protocol"),
    ({}, {"HY3D_TRITON_PROTOCOL": "ftp"}, "HY3D_TRITON_PROTOCOL"),
    ({"url": "localhost"}, {}, "url"),
    ({}, {"HY3D_TRITON_URL": "ftp://host:21"}, "HY3D_TRITON_URL"),
    ({"timeout_s": 0}, {}, "timeout_s"),
    ({}, {"HY3D_TRITON_TIMEOUT_S": "soon"}, "HY3D_TRITON_TIMEOUT_S"),
])
def test_invalid_triton_settings_name_the_argument_or_variable(kwargs, env, named):
    with pytest.raises(ConfigurationError) as caught:
        TritonSettings.resolve(environ=env, **kwargs)
    assert caught.value.setting == named
    assert str(caught.value).startswith(f"{named}: expected")


def test_r2_endpoint_is_built_from_the_account_id():
    settings = R2Settings.from_env(R2_ENV)
    assert settings.endpoint_url == "https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com"
    assert (settings.bucket, settings.url_expiry_s) == ("assets", DEFAULT_URL_EXPIRY_S)


def test_endpoint_override_makes_the_account_id_unnecessary():
    env = {k: v for k, v in R2_ENV.items() if k != "CF_R2_ACCOUNT_ID"}
    env["CF_R2_ENDPOINT_URL"] = "http://127.0.0.1:9000/"
    assert R2Settings.from_env(env).endpoint_url == "http://127.0.0.1:9000"


def test_missing_r2_variables_are_all_listed_by_name():
    with pytest.raises(ConfigurationError) as caught:
        R2Settings.from_env({"CF_R2_ACCESS_KEY": "AKIDEXAMPLE0001"})
    message = str(caught.value)
    for name in ("CF_R2_ACCOUNT_ID", "CF_R2_SECRET_KEY", "CF_R2_BUCKET"):
        assert name in message
    assert "CF_R2_ACCESS_KEY" not in message.split(":")[0] and "AKIDEXAMPLE0001" not in message


def test_r2_settings_repr_shows_no_key():
    text = repr(R2Settings.from_env(R2_ENV))
    assert R2_ENV["CF_R2_ACCESS_KEY"] not in text and R2_ENV["CF_R2_SECRET_KEY"] not in text


@pytest.mark.parametrize("expiry", ["0", str(MAX_URL_EXPIRY_S + 1), "an hour"])
def test_invalid_url_expiry_is_refused_naming_its_variable(expiry):
    with pytest.raises(ConfigurationError, match="HY3D_DOWNLOAD_URL_EXPIRY_S: expected"):
        R2Settings.from_env({**R2_ENV, "HY3D_DOWNLOAD_URL_EXPIRY_S": expiry})


def test_retry_policy_comes_from_the_environment():
    assert RetryPolicy.from_env({}).attempts == DEFAULT_RETRY_ATTEMPTS
    policy = RetryPolicy.from_env({"HY3D_RETRY_ATTEMPTS": "2", "HY3D_RETRY_INITIAL_DELAY_S": "0.5",
                                   "HY3D_RETRY_MAX_DELAY_S": "4"})
    assert (policy.attempts, policy.initial_delay_s, policy.max_delay_s) == (2, 0.5, 4.0)


@pytest.mark.parametrize(("env", "named"), [
    ({"HY3D_RETRY_ATTEMPTS": "0"}, "HY3D_RETRY_ATTEMPTS"),
    ({"HY3D_RETRY_ATTEMPTS": "three"}, "HY3D_RETRY_ATTEMPTS"),
    ({"HY3D_RETRY_INITIAL_DELAY_S": "-1"}, "HY3D_RETRY_INITIAL_DELAY_S"),
    ({"HY3D_RETRY_MAX_DELAY_S": "nan"}, "HY3D_RETRY_MAX_DELAY_S"),
])
def test_invalid_retry_settings_name_their_variable(env, named):
    with pytest.raises(ConfigurationError) as caught:
        RetryPolicy.from_env(env)
    assert caught.value.setting == named
