"""The fake Converse: sans-IO by plain calls, then the real SDK's converse against it (in-process transport)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from typing import Any

import numpy as np
import pytest

from sonic_bridge.fake.converse import FakeConverse, converse_model
from sonic_bridge.fake.scenario import LookPlan, Scenario
from sonic_bridge.vision.converse import request_body
from sonic_bridge.vision.encoder import encode_jpeg

pytest.importorskip("PIL")


def jpeg(colour: tuple[int, int, int], w: int = 64, h: int = 48) -> bytes:
    frame = np.zeros((h, w, 3), np.uint8)
    frame[:] = colour
    return encode_jpeg(frame, "rgb24", 640, 80)[0]


def ask(fake: FakeConverse, images: list[bytes], model: str = "us.amazon.nova-2-lite-v1:0",
        question: str = "What do you see?") -> tuple[int, dict[str, str], dict[str, Any]]:
    reply = fake.handle(model, json.dumps(request_body("Be brief.", question, images, 100)).encode())
    return reply.status, dict(reply.headers), json.loads(reply.body)


def test_the_route_is_the_services() -> None:
    assert converse_model("/model/us.amazon.nova-2-lite-v1%3A0/converse") == "us.amazon.nova-2-lite-v1:0"
    assert converse_model("/model/amazon.nova-2-sonic-v1%3A0/invoke-with-bidirectional-stream") is None


def test_the_answer_names_each_images_size_and_dominant_colour_in_order() -> None:
    fake = FakeConverse(Scenario())
    status, _, body = ask(fake, [jpeg((255, 0, 0)), jpeg((0, 0, 255), 32, 32), jpeg((255, 255, 0))])
    assert status == 200
    text = body["output"]["message"]["content"][0]["text"]
    assert text.startswith("I see 3 images. image 1: 64x48, mostly red; image 2: 32x32, mostly blue; "
                           "image 3: 64x48, mostly yellow. You asked: What do you see?")
    assert body["stopReason"] == "end_turn" and body["usage"]["inputTokens"] >= 3 * 230
    assert [s.colour for s in fake.seen[-1][1]] == ["red", "blue", "yellow"]


def test_more_images_than_the_model_takes_are_refused() -> None:
    status, headers, body = ask(FakeConverse(Scenario()), [jpeg((0, 255, 0))] * 6)
    assert status == 400 and headers["x-amzn-errortype"].startswith("ValidationException")
    assert "6 were sent; this model takes at most 5" in body["message"]
    assert ask(FakeConverse(Scenario()), [jpeg((0, 255, 0))] * 6, model="us.amazon.nova-pro-v1:0")[0] == 200


def test_wrong_formats_and_bytes_that_are_not_an_image_are_refused() -> None:
    fake = FakeConverse(Scenario())
    request = request_body("p", "q", [jpeg((1, 2, 3))], 10)
    request["messages"][0]["content"][0]["image"]["format"] = "bmp"
    reply = fake.handle("us.amazon.nova-2-lite-v1:0", json.dumps(request).encode())
    assert reply.status == 400 and b"failed to satisfy constraint: Member must satisfy enum value set" in reply.body
    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    status, _, body = ask(fake, [png.getvalue()])  # declared jpeg, is png
    assert status == 400 and "not a valid jpeg image" in body["message"]
    status, _, body = ask(fake, [b"\xff\xd8 not really"])
    assert status == 400 and "unable to process the image" in body["message"]


def test_oversized_images_are_refused() -> None:
    noise = np.random.default_rng(0).integers(0, 255, (1800, 1800, 3), dtype=np.uint8)
    big = encode_jpeg(noise, "rgb24", 8000, 95)[0]
    assert len(big) > 3_750_000
    status, _, body = ask(FakeConverse(Scenario()), [big])
    assert status == 400 and "at most 3750000 bytes" in body["message"]


def test_an_unknown_model_is_refused_as_the_service_does() -> None:
    status, _, body = ask(FakeConverse(Scenario()), [jpeg((0, 0, 0))], model="us.amazon.nova-9-ultra-v1:0")
    assert status == 400 and body["message"] == "The provided model identifier is invalid."


def test_planned_faults_answer_retries_alike_and_the_next_request_moves_on() -> None:
    fake = FakeConverse(Scenario(looks=(LookPlan(fault="throttle"), LookPlan(fault="access_denied"), LookPlan())))
    first = [jpeg((255, 0, 0))]
    assert ask(fake, first)[0] == 429
    assert ask(fake, first)[0] == 429  # a retry of the same request
    assert ask(fake, first, question="again?")[:2][0] == 403
    assert ask(fake, first, question="and now?")[0] == 200
    assert fake.requests == 3 and fake.calls == 4


# ------------------------------------------------------------------ the real SDK against it
def sdk_converse(scenario: Scenario, images: list[bytes], monkeypatch: pytest.MonkeyPatch) -> str:
    pytest.importorskip("aws_sdk_bedrock_runtime")
    from sonic_bridge.engines.sonic.backends.aws import AwsBackend
    from sonic_bridge.fake.direct import FakeService
    from sonic_bridge.fake.sdk_transport import FakeSdkTransport
    from sonic_bridge.host.config import BridgeConfig
    from sonic_bridge.vision.converse import SdkConverse

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret")
    transport = FakeSdkTransport(FakeService(scenario))
    backend = AwsBackend(BridgeConfig(), transport_factory=lambda: transport)

    async def main() -> str:
        return await SdkConverse(backend.sdk_client).describe(
            "us.amazon.nova-2-lite-v1:0", "Be brief.", "What colour?", images, 50)

    try:
        return asyncio.run(main())
    finally:
        assert transport.service.converse.calls >= 1


@pytest.mark.sdk
def test_the_real_sdks_converse_reads_the_fakes_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    text = sdk_converse(Scenario(), [jpeg((0, 255, 0)), jpeg((255, 255, 255))], monkeypatch)
    assert text.startswith("I see 2 images. image 1: 64x48, mostly green; image 2: 64x48, mostly white.")


@pytest.mark.sdk
@pytest.mark.parametrize(("fault", "kind"), [("throttle", "ThrottlingException"),
                                             ("access_denied", "AccessDeniedException")])
def test_the_real_sdk_raises_the_services_exceptions(fault: str, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from sonic_bridge.vision.converse import VisionError

    with pytest.raises(VisionError) as caught:
        sdk_converse(Scenario(looks=(LookPlan(fault=fault),)), [jpeg((0, 0, 0))], monkeypatch)
    assert caught.value.kind == kind


@pytest.mark.sdk
def test_the_real_sdk_gets_the_refusal_of_too_many_images(monkeypatch: pytest.MonkeyPatch) -> None:
    from sonic_bridge.vision.converse import VisionError

    with pytest.raises(VisionError) as caught:
        sdk_converse(Scenario(), [jpeg((0, 0, 0))] * 6, monkeypatch)
    assert caught.value.kind == "ValidationException" and "at most 5" in caught.value.message


def test_request_bodies_carry_base64_jpegs_then_the_question() -> None:
    body = request_body("sys", "q?", [b"\xff\xd8ab"], 7)
    content = body["messages"][0]["content"]
    assert base64.b64decode(content[0]["image"]["source"]["bytes"]) == b"\xff\xd8ab" and content[1] == {"text": "q?"}
