"""Configuration refuses nonsense at construction, naming the field, the value and what is allowed;
whatever it accepts crosses to the worker intact and gives a bridge that behaves."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import pytest
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sonic_bridge import BridgeConfig, FakeOptions, SessionSettings, SonicBridge, Tool
from sonic_bridge import events as ev
from sonic_bridge.engines.sonic import models
from sonic_bridge.engines.sonic.history import Message
from sonic_bridge.settings import Inference
from tests.fake_driver import silence16
from tests.helpers import has_state, run_until


@pytest.fixture(autouse=True)
def fresh_model_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "_warned", set(), raising=False)  # each test sees the once-per-process warning


# --------------------------------------------------------------------------- the cases
@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"stall_timeout": math.nan}, "stall_timeout must be a number from 0.5 to 3600 seconds, got nan"),
        ({"stall_timeout": math.inf}, "stall_timeout must be a number from 0.5 to 3600 seconds, got inf"),
        ({"stall_timeout": 0.01}, "stall_timeout must be a number from 0.5"),
        ({"renew_after": math.nan}, "renew_after must be a number from 1 to 480 seconds, got nan"),
        ({"renew_after": True}, r"renew_after must be a number .*, got True \(a bool\)"),
        ({"renew_after": 1e-6}, "renew_after must be a number from 1 to 480 seconds, got 1e-06"),
        ({"renew_after": 600}, "renew_after must be a number from 1 to 480"),
        ({"renew_force_after": math.nan}, "renew_force_after must be a number from 0.1 to 480 seconds, got nan"),
        ({"max_reconnects": -1}, "max_reconnects must be a whole number from 0 to 100, got -1"),
        ({"max_reconnects": "3"}, "max_reconnects must be a whole number from 0 to 100, got '3'"),
        ({"max_reconnects": None}, "max_reconnects must be a whole number from 0 to 100, got None"),
        ({"max_reconnects": 2.0}, "max_reconnects must be a whole number"),
        ({"max_restarts": True}, r"max_restarts must be a whole number .*\(a bool\)"),
        ({"kill_stalled_after": -1}, "kill_stalled_after must be a number from 1 to 3600"),
        ({"connect_timeout": "20"}, "connect_timeout must be a number from 0.5 to 600 seconds, got '20'"),
        ({"startup_timeout": math.inf}, "startup_timeout must be a number"),
        ({"fake": FakeOptions(time_scale=1.0)} | {"output_sample_rate": 16000.0}, "output_sample_rate must be one of"),
        ({"inbound_capacity": True}, "inbound_capacity must be a whole number from 65536 to"),
        ({"outbound_capacity": 2.5e6}, "outbound_capacity must be a whole number"),
        ({"backend": ["fake"]}, "backend must be one of"),
        ({"log_level": "info"}, "log_level must be one of"),
        ({"region": None}, "does not look like an AWS region"),
        ({"endpoint": 443}, r"endpoint must be an https:// URL with a host name \(.*\), got 443"),
        ({"endpoint": "https://"}, "endpoint must be an https:// URL with a host name"),
        ({"endpoint": "https://host:99999"}, "endpoint must be .*Port out of range"),
        ({"endpoint": "https://bad host"}, "endpoint must be"),
        ({"profile": ""}, "profile must be a non-empty string"),
        ({"session": {"voice": "matthew"}}, r"session must be a SessionSettings, got .*\(a dict\)"),
        ({"fake": {"time_scale": 0.1}}, "fake must be a FakeOptions"),
    ],
)
def test_nonsense_bridge_settings_are_refused_naming_field_value_and_range(kw: dict[str, Any], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        BridgeConfig(**kw)


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"time_scale": 1e-9}, r"fake.time_scale must be a number from 0.01 to 100 \(0.01: the 8-minute limit"),
        ({"time_scale": math.nan}, "fake.time_scale must be a number from 0.01 to 100"),
        ({"time_scale": True}, r"fake.time_scale .*\(a bool\)"),
        ({"seed": -1}, "fake.seed must be a whole number from 0"),
        ({"seed": 1.5}, "fake.seed must be a whole number"),
        ({"via_sdk": "yes"}, "fake.via_sdk must be True or False, got 'yes'"),
        ({"scenario": "/no/such/scenario.json"}, "fake.scenario '/no/such/scenario.json' does not exist"),
        ({"scenario": "/"}, "fake.scenario '/' is a directory, not a scenario file"),
        ({"scenario": 3}, "fake.scenario must be a file path"),
    ],
)
def test_nonsense_fake_options_are_refused(kw: dict[str, Any], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        FakeOptions(**kw)


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"tools": ("x",)}, r"tools\[0\] must be a Tool\(name, description, schema\), got 'x'"),
        ({"tools": "get_weather"}, "tools must be a tuple of Tool, got 'get_weather'"),
        ({"history": ("hi",)}, r"history\[0\] must be a Message\(role, text\), got 'hi'"),
        ({"voice": ["matthew"]}, r"voice \['matthew'\] is not available"),
        ({"input_rate": True}, "input_rate must be one of"),
        ({"output_rate": 24000.0}, "output_rate must be one of"),
        ({"inference": {"max_tokens": 5}}, r"inference must be an Inference\(max_tokens, top_p, temperature\)"),
        ({"system_prompt": "x" * 100_001}, "system_prompt is 100001 bytes long; at most 100000"),
        ({"system_prompt": 42}, "system_prompt must be a non-empty string, got 42"),
        ({"turn_sensitivity": ["HIGH"]}, "turn_sensitivity must be one of"),
        ({"tool_choice": None}, "tool_choice must be 'auto', 'any' or a tool name"),
        ({"model_id": "amazon.nova-sonic-v1:0", "tool_choice": "any"}, "has no tool_choice setting"),
        ({"model_id": 7}, "model_id must be a non-empty string, got 7"),
    ],
)
def test_nonsense_session_settings_are_refused(kw: dict[str, Any], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        SessionSettings(**kw)


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"top_p": math.nan}, "inference.top_p must be a number from 0 to 1, got nan"),
        ({"temperature": True}, r"inference.temperature must be a number from 0 to 1, got True \(a bool\)"),
        ({"temperature": "0.5"}, "inference.temperature must be a number from 0 to 1, got '0.5'"),
        ({"max_tokens": 1.5}, "inference.max_tokens must be a whole number from 1 to 10000, got 1.5"),
        ({"max_tokens": 0}, "inference.max_tokens must be a whole number from 1 to 10000, got 0"),
    ],
)
def test_nonsense_inference_settings_are_refused(kw: dict[str, Any], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        Inference(**kw)


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (("get weather", "d", {}), "tool name must be 1 to 64 letters, digits, '_' or '-', got 'get weather'"),
        (("x" * 65, "d", {}), "tool name must be 1 to 64"),
        (("wetter_é", "d", {}), "tool name must be"),
        ((None, "d", {}), "tool name must be"),
        (("t", "", {}), "tool 't' needs a description"),
        (("t", "d", "{}"), "tool 't': input_schema must be a JSON Schema object"),
        (("t", "d", {"enum": {1, 2}}), r"tool 't' input_schema holds a set at \['enum'\], which JSON cannot carry"),
        (("t", "d", {"maximum": math.inf}), r"tool 't' input_schema holds inf at \['maximum'\]"),
    ],
)
def test_nonsense_tools_are_refused(args: tuple[Any, ...], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        Tool(*args)


def test_an_accepted_tool_keeps_the_schema_it_was_given() -> None:
    schema: dict[str, Any] = {"type": "object", "properties": {}}
    tool = Tool("t", "d", schema)
    schema["properties"]["bad"] = {1, 2}  # a later change to the caller's dict cannot break the tool
    assert tool.input_schema == {"type": "object", "properties": {}}
    assert json.loads(SessionSettings(tools=[tool]).dumps())["tools"][0]["input_schema"] == tool.input_schema


def test_lists_are_taken_as_tuples_so_the_config_stays_hashable_and_serialisable() -> None:
    settings_ = SessionSettings(tools=[Tool("t", "d", {})], history=[Message(ev.Role.USER, "hi")])
    assert isinstance(settings_.tools, tuple) and isinstance(settings_.history, tuple)
    config = BridgeConfig(session=settings_)
    assert BridgeConfig.from_json(json.loads(config.dumps())) == config


def test_json_from_a_file_is_refused_with_the_key_that_is_wrong() -> None:
    with pytest.raises(ValueError, match="session must be an object, got 'x'"):
        BridgeConfig.from_json({"session": "x"})
    with pytest.raises(ValueError, match=r"session has unknown keys \['colour'\]"):
        BridgeConfig.from_json({"session": {"colour": "red"}})
    with pytest.raises(ValueError, match=r"session.inference has unknown keys \['top_k'\]"):
        BridgeConfig.from_json({"session": {"inference": {"top_k": 3}}})


# --------------------------------------------------------------------------- model ids
def test_an_unrecognised_model_id_is_refused_for_the_real_service() -> None:
    session = SessionSettings(model_id="amazon.nova-sonic-v9")
    with pytest.raises(ValueError, match=r"'amazon.nova-sonic-v9' matches no Nova Sonic model family "
                                         r"\(did you mean 'amazon.nova-sonic-v1:0'\?\).*aws backend refuses it"):
        BridgeConfig(session=session, backend="aws")
    with pytest.raises(ValueError, match=r"did you mean 'us.amazon.nova-2-sonic-v1:0'"):
        BridgeConfig(session=SessionSettings(model_id="us.amazon.nova-2-sonic-v1"), backend="aws")


def test_model_id_typos_warn_clearly_once(caplog: pytest.LogCaptureFixture) -> None:
    SessionSettings(model_id="amazon.nova-2-sonic-v1")
    SessionSettings(model_id="amazon.nova-2-sonic-v1")
    (record,) = [r for r in caplog.records if r.name == "sonic_bridge.models"]
    assert record.levelname == "WARNING"
    assert "'amazon.nova-2-sonic-v1' matches no Nova Sonic model family" in record.message
    assert "did you mean 'amazon.nova-2-sonic-v1:0'" in record.message


def test_a_new_version_of_a_known_family_is_used_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    config = BridgeConfig(session=SessionSettings(model_id="amazon.nova-2-sonic-v2:0"), backend="aws")
    assert config.session.model.family is models.Family.NOVA_2
    assert "taken as a newer version of Nova 2 Sonic" in caplog.text
    caplog.clear()
    SessionSettings(model_id="amazon.nova-2-sonic-v1:0")
    assert not caplog.text  # a known id: not a word


def test_a_near_miss_in_case_is_refused_with_the_right_spelling() -> None:
    with pytest.raises(ValueError, match=r"not a Nova Sonic model \(did you mean 'amazon.nova-2-sonic-v1:0'\?\)"):
        SessionSettings(model_id="Amazon.Nova-2-Sonic-v1:0")


# --------------------------------------------------------------------------- files
@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


def test_a_pem_ca_file_is_accepted_also_as_a_path_object(ca_pem: Path) -> None:
    config = BridgeConfig(ca_file=ca_pem)  # type: ignore[arg-type]
    assert config.ca_file == str(ca_pem)
    assert BridgeConfig.from_json(json.loads(config.dumps())) == config


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"hello, I am not a certificate\n", "holds no PEM certificate; give the CA certificate in PEM form"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "holds a private key, not a certificate"),
        (b"\x30\x82\x01\x0a" + bytes(50), "looks like a DER certificate .*openssl x509 -inform der"),
        (b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
         r"holds a certificate block that cannot be read \(\[X509\]"),
        (b"", "holds no PEM certificate"),
    ],
)
def test_a_ca_file_that_is_not_a_pem_certificate_is_named_at_config_time(
    tmp_path: Path, content: bytes, why: str
) -> None:
    path = tmp_path / "ca.pem"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"ca_file '{path}' {why}"):
        BridgeConfig(backend="aws", ca_file=str(path))


def test_directories_and_missing_files_get_their_own_message(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"ca_file '{tmp_path}' is a directory, not a certificate file; give"):
        BridgeConfig(ca_file=str(tmp_path))
    with pytest.raises(ValueError, match=r"ca_file '/no/ca\.pem' does not exist; give the CA certificate in PEM"):
        BridgeConfig(ca_file="/no/ca.pem")
    with pytest.raises(ValueError, match=f"worker_python '{tmp_path}' is not an executable file: it is a directory; "
                                         "give the path of a Python >= 3.12 interpreter"):
        BridgeConfig(worker_python=str(tmp_path))
    plain = tmp_path / "python"
    plain.write_text("")
    os.chmod(plain, 0o644)
    with pytest.raises(ValueError, match="is not an executable file: it lacks the execute permission"):
        BridgeConfig(worker_python=str(plain))


# --------------------------------------------------------------------------- properties
anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.sampled_from(["/", "/no/such/file", "https://x", "fake", "aws", "HIGH", "matthew", "us-east-1"]),
)
BRIDGE_FIELDS = [f.name for f in dataclasses.fields(BridgeConfig) if f.name not in ("session", "fake")]
SESSION_FIELDS = [f.name for f in dataclasses.fields(SessionSettings)]


def _accepted_config_crosses_to_the_worker(config: BridgeConfig) -> None:
    assert BridgeConfig.from_json(json.loads(config.dumps())) == config


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(BRIDGE_FIELDS), anything)
def test_any_bridge_field_value_is_refused_by_name_or_crosses_to_the_worker(name: str, value: Any) -> None:
    try:
        config = BridgeConfig(**{name: value})
    except ValueError as exc:
        assert name.split("_", maxsplit=1)[0] in str(exc) or name == "region", str(exc)
        return
    _accepted_config_crosses_to_the_worker(config)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SESSION_FIELDS), anything)
def test_any_session_field_value_is_refused_by_name_or_crosses_to_the_worker(name: str, value: Any) -> None:
    try:
        session = SessionSettings(**{name: value})
    except ValueError as exc:
        named = name.split("_", maxsplit=1)[0] in str(exc) or (name == "model_id" and "model id" in str(exc))
        assert named, str(exc)
        return
    _accepted_config_crosses_to_the_worker(BridgeConfig(session=session))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["time_scale", "seed", "scenario", "via_sdk"]), anything)
def test_any_fake_option_is_refused_by_name_or_crosses_to_the_worker(name: str, value: Any) -> None:
    try:
        fake = FakeOptions(**{name: value})
    except ValueError as exc:
        assert f"fake.{name}" in str(exc), str(exc)
        return
    _accepted_config_crosses_to_the_worker(BridgeConfig(fake=fake))


# Everything the ranges allow, boundaries included. startup_timeout stays at its default: a loaded
# machine may truly need more than its 1 s minimum to import the worker.
@st.composite
def accepted_configs(draw: st.DrawFn) -> BridgeConfig:
    model = draw(st.sampled_from(["amazon.nova-2-sonic-v1:0", "amazon.nova-sonic-v1:0", "us.amazon.nova-2-5-sonic"]))
    info = models.model_info(model)
    session = SessionSettings(
        model_id=model,
        voice=draw(st.sampled_from(sorted(info.voices))),
        system_prompt=draw(st.text(min_size=1, max_size=200).filter(str.strip)),
        input_rate=draw(st.sampled_from(models.SERVICE_RATES)),
        output_rate=draw(st.sampled_from(models.SERVICE_RATES)),
        inference=Inference(draw(st.integers(1, 10_000)), draw(st.floats(0, 1)), draw(st.floats(0, 1))),
        turn_sensitivity=draw(st.sampled_from([None, *models.TURN_SENSITIVITIES]))
        if info.supports_turn_detection else None,
    )
    seconds = {name: draw(st.floats(low, high)) for name, (low, high) in _SECONDS.items()}
    return BridgeConfig(
        session=session,
        output_sample_rate=draw(st.sampled_from((8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000))),
        output_format=draw(st.sampled_from(list(ev.SampleFormat))),
        inbound_capacity=draw(st.sampled_from([64 * 1024, 1 << 20, 8 << 20])),
        outbound_capacity=draw(st.sampled_from([64 * 1024, 1 << 20, 16 << 20])),
        max_restarts=draw(st.integers(0, 100)),
        max_reconnects=draw(st.integers(0, 100)),
        fake=FakeOptions(time_scale=draw(st.floats(0.01, 100)), seed=draw(st.integers(0, 2**63 - 1))),
        **seconds,
    )


# The upper ends are capped where a longer wait cannot show within one example.
_SECONDS = {"stall_timeout": (0.5, 3600.0), "kill_stalled_after": (1.0, 3600.0), "connect_timeout": (0.5, 600.0),
            "renew_after": (1.0, 480.0), "renew_force_after": (0.1, 480.0)}


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(accepted_configs())
def test_any_accepted_configuration_gives_a_bridge_that_reaches_ready_without_errors(config: BridgeConfig) -> None:
    with SonicBridge(config) as bridge:
        events = run_until(bridge, has_state(ev.BridgeState.READY), timeout=30)
        # Half a second of a host's cycle after READY (audio in): nothing may be reported as wrong.
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline and not bridge.closed:
            bridge.push_audio(silence16(0.02), 16000)
            events += bridge.poll()
            time.sleep(0.02)
        events += bridge.poll()
    errors = [e for e in events if isinstance(e, ev.Error)]
    assert not errors, (errors, config)
    states = [e.state for e in events if isinstance(e, ev.StateChanged)]
    assert ev.BridgeState.RECONNECTING not in states and ev.BridgeState.CLOSED not in states, (states, config)


def test_a_bad_worker_env_entry_is_named_without_its_value() -> None:
    with pytest.raises(ValueError, match=r"worker_env\['AWS_SECRET_ACCESS_KEY'\] must be a string") as info:
        BridgeConfig(worker_env={"AWS_SECRET_ACCESS_KEY": b"topsecret"})  # type: ignore[dict-item]
    assert "topsecret" not in str(info.value)
    with pytest.raises(ValueError, match="worker_env keys must be variable names, got 'A=B'"):
        BridgeConfig(worker_env={"A=B": "x"})
