"""A plain Nova Sonic client for the SDK lines other integrations pin (0.4 and 0.9 style APIs).

Run with an interpreter that has that SDK version; it talks to the fake server like any third-party
client would: endpoint, env credentials, and the CA through SSL_CERT_FILE with the stock CRT transport.
Prints a JSON summary of what came back.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
import sys
import uuid


def events(prompt: str) -> list[dict]:
    audio = str(uuid.uuid4())
    system = str(uuid.uuid4())
    tone = b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * 300 * i / 16000))) for i in range(16000))
    silence = b"\0\0" * 16000 * 3
    out = [
        {"event": {"sessionStart": {"inferenceConfiguration": {"maxTokens": 1024, "topP": 0.9, "temperature": 0.7}}}},
        {"event": {"promptStart": {"promptName": prompt, "textOutputConfiguration": {"mediaType": "text/plain"},
                                   "audioOutputConfiguration": {"mediaType": "audio/lpcm", "sampleRateHertz": 24000,
                                                                "sampleSizeBits": 16, "channelCount": 1,
                                                                "voiceId": "matthew", "encoding": "base64",
                                                                "audioType": "SPEECH"}}}},
        {"event": {"contentStart": {"promptName": prompt, "contentName": system, "type": "TEXT", "interactive": False,
                                    "role": "SYSTEM", "textInputConfiguration": {"mediaType": "text/plain"}}}},
        {"event": {"textInput": {"promptName": prompt, "contentName": system, "content": "Be brief."}}},
        {"event": {"contentEnd": {"promptName": prompt, "contentName": system}}},
        {"event": {"contentStart": {"promptName": prompt, "contentName": audio, "type": "AUDIO", "interactive": True,
                                    "role": "USER", "audioInputConfiguration": {
                                        "mediaType": "audio/lpcm", "sampleRateHertz": 16000, "sampleSizeBits": 16,
                                        "channelCount": 1, "audioType": "SPEECH", "encoding": "base64"}}}},
    ]
    pcm = tone + silence
    for i in range(0, len(pcm), 1024):
        out.append({"event": {"audioInput": {"promptName": prompt, "contentName": audio,
                                             "content": base64.b64encode(pcm[i:i + 1024]).decode()}}})
    out += [{"event": {"contentEnd": {"promptName": prompt, "contentName": audio}}},
            {"event": {"promptEnd": {"promptName": prompt}}}, {"event": {"sessionEnd": {}}}]
    return out


def make_client(endpoint: str):
    try:  # 0.10 and later
        from aws_sdk_bedrock_runtime.config import AsyncBedrockRuntimeConfig  # noqa: F401
        raise SystemExit("use the in-tree tests for 0.10+")
    except ImportError:
        pass
    from aws_sdk_bedrock_runtime.config import Config
    try:
        from aws_sdk_bedrock_runtime.client import AsyncBedrockRuntimeClient as Client
    except ImportError:
        from aws_sdk_bedrock_runtime.client import BedrockRuntimeClient as Client
    try:
        from smithy_aws_core.identity.environment import EnvironmentCredentialsResolver
    except ImportError:
        from smithy_aws_core.credentials_resolvers.environment import EnvironmentCredentialsResolver
    return Client(config=Config(endpoint_uri=endpoint, region="us-east-1",
                                aws_credentials_identity_resolver=EnvironmentCredentialsResolver()))


async def main(endpoint: str) -> None:
    from aws_sdk_bedrock_runtime.models import (
        BidirectionalInputPayloadPart,
        InvokeModelWithBidirectionalStreamInputChunk,
        InvokeModelWithBidirectionalStreamOperationInput,
    )

    client = make_client(endpoint)
    stream = await client.invoke_model_with_bidirectional_stream(
        InvokeModelWithBidirectionalStreamOperationInput(model_id="amazon.nova-2-sonic-v1:0"))
    seen: dict[str, int] = {}
    texts: list[str] = []

    async def read() -> None:
        _, output = await stream.await_output()
        while (chunk := await output.receive()) is not None:
            event = json.loads(chunk.value.bytes_)
            name = next(iter(event["event"]))
            seen[name] = seen.get(name, 0) + 1
            if name == "textOutput":
                texts.append(event["event"]["textOutput"]["content"])

    reader = asyncio.create_task(read())
    for event in events(str(uuid.uuid4())):
        await stream.input_stream.send(InvokeModelWithBidirectionalStreamInputChunk(
            value=BidirectionalInputPayloadPart(bytes_=json.dumps(event).encode())))
        if "audioInput" in event["event"]:
            await asyncio.sleep(0.032)  # the microphone's pace
    await asyncio.sleep(1.0)
    await stream.input_stream.close()
    await asyncio.wait_for(reader, 10)
    import importlib.metadata
    print(json.dumps({"version": importlib.metadata.version("aws-sdk-bedrock-runtime"), "seen": seen, "texts": texts}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
