"""The multimodal Nova behind the look tool: one Bedrock Converse request (images + question -> text).

``SdkConverse`` uses the worker's own AWS SDK client (aws-sdk-bedrock-runtime 0.12): the same credentials,
Region, endpoint override and transport as the Nova Sonic stream (Converse is served by the same
bedrock-runtime endpoint). ``request_body`` is the request exactly as it travels (restJson1, images in
base64), shared with the fake's direct door so both doors send the same thing.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

ACCESS_FIX = ("grant bedrock:InvokeModel on the vision model (for a cross-Region id such as us.amazon.nova-2-lite-"
              "v1:0: on the inference profile and on the foundation model in every Region it routes to), and "
              "enable access to the model in the Bedrock console")


class VisionError(Exception):
    """The vision model gave no answer: ``kind`` is the service's exception name (or Timeout, NoAnswer)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    def explain(self, model_id: str) -> str:
        """What went wrong, with the fix where there is one."""
        if self.kind == "AccessDeniedException":
            return f"access to {model_id} was denied ({self.message}): {ACCESS_FIX}"
        if self.kind == "ThrottlingException":
            return f"{model_id} is throttling requests ({self.message})"
        if self.kind in ("ValidationException", "ResourceNotFoundException"):
            return f"{model_id} refused the request: {self.kind}: {self.message} (check vision.model_id and region)"
        return f"{model_id} gave no answer: {self.kind}: {self.message}"


class VisionModel(Protocol):
    async def describe(self, model_id: str, prompt: str, question: str, images: list[bytes],
                       max_tokens: int) -> str:
        """The model's text answer about ``images`` (JPEGs, oldest first); raises VisionError."""
        ...


def request_body(prompt: str, question: str, images: list[bytes], max_tokens: int) -> dict[str, Any]:
    """The Converse request as JSON on the wire (what the SDK serialises from its models)."""
    content: list[dict[str, Any]] = [
        {"image": {"format": "jpeg", "source": {"bytes": base64.b64encode(jpeg).decode()}}} for jpeg in images
    ]
    content.append({"text": question})
    return {"messages": [{"role": "user", "content": content}], "system": [{"text": prompt}],
            "inferenceConfig": {"maxTokens": max_tokens, "temperature": 0.2}}


def answer_text(response: dict[str, Any]) -> str:
    """The text of a Converse response (JSON as on the wire); VisionError when it holds none."""
    try:
        blocks = response["output"]["message"]["content"]
        text = "".join(b["text"] for b in blocks if isinstance(b, dict) and isinstance(b.get("text"), str))
    except (KeyError, TypeError) as exc:
        raise VisionError("NoAnswer", f"the response has no output message ({exc})") from None
    if not text.strip():
        raise VisionError("NoAnswer", "the model answered with no text")
    return text.strip()


class SdkConverse:
    """Converse through the worker's SDK client (``client`` builds or returns it)."""

    def __init__(self, client: Callable[[], Awaitable[Any]]) -> None:
        self._client = client

    async def describe(self, model_id: str, prompt: str, question: str, images: list[bytes],
                       max_tokens: int) -> str:
        from aws_sdk_bedrock_runtime.models import (
            ContentBlockImage,
            ContentBlockText,
            ConverseInput,
            ImageBlock,
            ImageSourceBytes,
            InferenceConfiguration,
            Message,
            SystemContentBlockText,
        )

        content: list[Any] = [ContentBlockImage(ImageBlock(format="jpeg", source=ImageSourceBytes(jpeg)))
                              for jpeg in images]
        content.append(ContentBlockText(question))
        request = ConverseInput(
            model_id=model_id, messages=[Message(role="user", content=content)],
            system=[SystemContentBlockText(prompt)],
            inference_config=InferenceConfiguration(max_tokens=max_tokens, temperature=0.2))
        try:
            client = await self._client()
            output = await client.converse(request)
        except VisionError:
            raise
        except Exception as exc:
            # The SDK raises its modelled exceptions (ThrottlingException ...); a BackendError from resolving
            # credentials carries the service's name in ``kind``.
            kind = str(getattr(exc, "kind", "") or type(exc).__name__)
            raise VisionError(kind, str(getattr(exc, "message", "") or exc)) from None
        text = "".join(getattr(block, "value", "") for block in output.output.value.content
                       if isinstance(block, ContentBlockText))
        if not text.strip():
            raise VisionError("NoAnswer", "the model answered with no text")
        return text.strip()


class DirectConverse:
    """The fake's Converse without the SDK (the direct door): the same request JSON, the same answers."""

    def __init__(self, handle: Callable[[str, bytes], Awaitable[tuple[int, dict[str, str], bytes]]]) -> None:
        self._handle = handle

    async def describe(self, model_id: str, prompt: str, question: str, images: list[bytes],
                       max_tokens: int) -> str:
        body = json.dumps(request_body(prompt, question, images, max_tokens)).encode()
        status, headers, payload = await self._handle(model_id, body)
        data = json.loads(payload or b"{}")
        if status != 200:
            kind = headers.get("x-amzn-errortype", "ServiceError").split(":", 1)[0]
            raise VisionError(kind, str(data.get("message", "")))
        return answer_text(data)
