"""A tiny OpenAI-compatible model server on 127.0.0.1, for real OpenClaw agent turns in tests.

OpenClaw's `openai-completions` provider (dist/openai-transport-stream-*.js) calls
`POST <baseUrl>/chat/completions` through the OpenAI SDK with `stream: true` (and
`stream_options.include_usage` when the model's compat says so), reading SSE chunks
`choices[0].delta.{content, tool_calls}` and `finish_reason`, then `data: [DONE]`. A
non-streaming request gets one `chat.completion` object. `GET /models` lists the one model.

Replies are harmless text; a user message containing "run a command" gets one tool call of the
`exec` (or `bash`) tool the request offers, with `echo hello` — OpenClaw really executes it. Every
request body is recorded (`server.requests`), so tests can check what OpenClaw sent the model.

    server = MockModel.start(); ...; server.stop()
    python tests/interop/mock_model.py      # serves until killed, prints the port
"""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL_ID = "mock-1"
SAFE_COMMAND = "echo hello"
TOOL_NAMES = ("exec", "bash", "shell")


def _text_of(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


def plan_reply(body):
    """(text, tool_call or None) for one request: a tool call only right after a user turn asking."""
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    tools = [t.get("function", {}).get("name") for t in body.get("tools") or [] if isinstance(t, dict)]
    tool = next((n for n in TOOL_NAMES if n in tools), None)
    if last.get("role") == "user" and "run a command" in _text_of(last.get("content")) and tool:
        n = sum(1 for m in messages if m.get("role") == "assistant")
        return "", {"id": "call_%d_%d" % (n, int(time.time() * 1000) % 100000), "name": tool,
                    "arguments": json.dumps({"command": SAFE_COMMAND})}
    if last.get("role") == "tool":
        return "The command printed: %s." % _text_of(last.get("content")).strip()[:200], None
    return "Noted: %s. (mock reply %d)" % (_text_of(last.get("content"))[-120:], len(messages)), None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _json(self, code, doc):
        data = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.rstrip("/").endswith("/models"):
            self._json(200, {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "owned_by": "mock"}]})
        else:
            self._json(404, {"error": {"message": "not found"}})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw.decode("utf-8"))
        except ValueError:
            self._json(400, {"error": {"message": "bad json"}})
            return
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._json(404, {"error": {"message": "only /chat/completions here"}})
            return
        self.server.requests.append(body)
        text, call = plan_reply(body)
        usage = {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
        cid = "chatcmpl-mock%d" % len(self.server.requests)
        finish = "tool_calls" if call else "stop"
        if not body.get("stream"):
            msg = {"role": "assistant", "content": text or None}
            if call:
                msg["tool_calls"] = [{"id": call["id"], "type": "function",
                                      "function": {"name": call["name"], "arguments": call["arguments"]}}]
            self._json(200, {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": MODEL_ID,
                             "choices": [{"index": 0, "message": msg, "finish_reason": finish}], "usage": usage})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()

        def chunk(delta, finish_reason=None, with_usage=False):
            doc = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": MODEL_ID,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
            if with_usage:
                doc["usage"] = usage
            self.wfile.write(b"data: " + json.dumps(doc).encode() + b"\n\n")

        chunk({"role": "assistant", "content": ""})
        if call:
            chunk({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                   "function": {"name": call["name"], "arguments": ""}}]})
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": call["arguments"]}}]})
        else:
            half = len(text) // 2
            chunk({"content": text[:half]})
            chunk({"content": text[half:]})
        chunk({}, finish, with_usage=True)
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


class MockModel(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests = []
        self._thread = None

    @property
    def base_url(self):
        return "http://127.0.0.1:%d/v1" % self.server_address[1]

    @classmethod
    def start(cls):
        server = cls()
        server._thread = threading.Thread(target=server.serve_forever, daemon=True)
        server._thread.start()
        return server

    def stop(self):
        self.shutdown()
        self.server_close()


if __name__ == "__main__":
    srv = MockModel()
    print(srv.base_url, flush=True)
    srv.serve_forever()
