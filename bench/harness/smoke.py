"""One plain and one streamed request per path before any load: is the answer right?"""

from __future__ import annotations

import urllib.error
import urllib.request

import orjson
from fake_upstream import COMPLETION_TEXT

from harness.config import BODY, STREAM_BODY


def smoke_http(url: str, key: str, expect: str) -> str | None:
    """None when one plain and one streamed request through ``url`` give the fake's answer."""
    hdrs = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    try:
        req = urllib.request.Request(url, data=orjson.dumps(BODY), headers=hdrs)
        with urllib.request.urlopen(req, timeout=10) as r:
            got = orjson.loads(r.read())["choices"][0]["message"]["content"]
        if got != COMPLETION_TEXT:
            return f"unexpected content {got[:80]!r}"
        req = urllib.request.Request(url, data=orjson.dumps(STREAM_BODY), headers=hdrs)
        with urllib.request.urlopen(req, timeout=10) as r:
            text = []
            for raw in r.read().split(b"\n"):
                if raw.startswith(b"data:") and raw[5:].strip() != b"[DONE]":
                    for ch in orjson.loads(raw[5:]).get("choices") or ():
                        text.append((ch.get("delta") or {}).get("content") or "")
        if "".join(text) != expect:
            return f"stream text differs: {''.join(text)[:80]!r}"
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code}: {e.read()[:300].decode(errors='replace')}"
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        return f"{type(e).__name__}: {e}"
    return None


def smoke_grpc(target: str, key: str, expect: str) -> str | None:
    """None when one Chat and one StreamChat over gRPC give the fake's answer."""
    try:
        import grpc
        from loadgen import chat_request
        from switchboard.v1 import chat_pb2, chat_pb2_grpc
    except ImportError as e:
        return f"cannot import gRPC stubs: {e}"
    md = (("authorization", f"Bearer {key}"),)
    req = chat_request(BODY)
    try:
        with grpc.insecure_channel(target) as ch:
            grpc.channel_ready_future(ch).result(timeout=10)
            stub = chat_pb2_grpc.ChatServiceStub(ch)
            resp = stub.Chat(req, metadata=md, timeout=10)
            got = "".join(p.text for p in resp.message.content)
            if got != COMPLETION_TEXT:
                return f"unexpected content {got[:80]!r}"
            frames = list(
                stub.StreamChat(chat_pb2.StreamChatRequest(chat=req), metadata=md, timeout=10)
            )
            text = "".join(f.text.text for f in frames if f.WhichOneof("frame") == "text")
            if text != expect:
                return f"stream text differs: {text[:80]!r}"
            if not frames or frames[-1].WhichOneof("frame") != "end":
                return "stream did not finish with an end frame"
    except grpc.RpcError as e:
        return f"gRPC {e.code().name}: {e.details()}"
    except grpc.FutureTimeoutError:
        return "gRPC port not ready after 10 s"
    return None
