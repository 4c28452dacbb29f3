"""The emulator answering with a model behind an OpenAI-compatible chat endpoint.

No model server can be installed offline, so a minimal OpenAI-compatible server stands in for
vLLM/Ollama: it records what it was asked and answers in the chat.completion shape.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest
from helpers import finished, jsonl_job

from pdbatch.emulator import OpenAIForwarder


class _ChatServer(BaseHTTPRequestHandler):
    asked: list[dict] = []
    delay = 0.0  # seconds each answer takes
    in_flight = most_in_flight = 0
    lock = threading.Lock()

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.path == "/v1/chat/completions"
        self.asked.append(body)
        with self.lock:
            _ChatServer.in_flight += 1
            _ChatServer.most_in_flight = max(_ChatServer.most_in_flight, self.in_flight)
        time.sleep(self.delay)
        with self.lock:
            _ChatServer.in_flight -= 1
        text = "model says: " + body["messages"][-1]["content"]
        answer = json.dumps({
            "id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "length",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


@pytest.fixture
def model_server(stack):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _ChatServer.asked, _ChatServer.delay, _ChatServer.most_in_flight = [], 0.0, 0
    original = stack.service.responder
    stack.service.responder = OpenAIForwarder(
        f"http://127.0.0.1:{server.server_address[1]}/v1", "local-llama")
    yield _ChatServer.asked
    stack.service.responder = original
    server.shutdown()
    server.server_close()
    thread.join()


def test_gemini_rows_are_answered_by_the_forwarded_model(staging, model_server):
    df = pd.DataFrame({"prompt": ["What is 2+2?", "Name a colour."]})
    out = df.gemini.batch_predict(
        prompt_col="prompt", staging=staging, progress=False, system_instruction="Be terse.",
        generation_config={"temperature": 0.3, "max_output_tokens": 20, "top_p": 0.9,
                           "response_mime_type": "application/json"})

    assert out["text"].tolist() == ["model says: What is 2+2?", "model says: Name a colour."]
    assert (out["finish_reason"] == "MAX_TOKENS").all()
    assert out["prompt_tokens"].tolist() == [7, 7] and out["output_tokens"].tolist() == [3, 3]
    assert sorted(model_server, key=lambda b: b["messages"][-1]["content"])[0] == {
        "model": "local-llama",
        "messages": [{"role": "system", "content": "Be terse."},
                     {"role": "user", "content": "Name a colour."}],
        "temperature": 0.3, "top_p": 0.9, "max_tokens": 20,
        "response_format": {"type": "json_object"}}


def test_openai_lines_are_forwarded_as_they_are(gapic, parent, fs, staging, model_server):
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "meta/llama-3.3-70b-instruct-maas", "max_tokens": 5,
                     "messages": [{"role": "user", "content": "hi"}]}}
    fs.pipe(f"{staging}/chat.jsonl", (json.dumps(line) + "\n").encode())
    job = finished(gapic, gapic.create_batch_prediction_job(
        parent=parent, batch_prediction_job=jsonl_job(
            f"{staging}/chat.jsonl", f"{staging}/out",
            model="publishers/meta/models/llama-3.3-70b-instruct-maas")).name)
    [out] = [json.loads(x) for x in fs.cat(
        f"{job.output_info.gcs_output_directory}/predictions.jsonl").splitlines()]
    assert out["response"]["choices"][0]["message"]["content"] == "model says: hi"
    assert model_server == [{**line["body"], "model": "local-llama"}]


def test_claude_rows_and_a_response_schema_reach_the_model_in_its_terms(staging,
                                                                        model_server):
    df = pd.DataFrame({"prompt": ["Say hi.", "Say bye."]})
    out = df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                  model="claude-sonnet-4@20250514",
                                  system_instruction="Be kind.",
                                  generation_config={"max_output_tokens": 9, "top_k": 3})
    assert out["text"].tolist() == ["model says: Say hi.", "model says: Say bye."]
    # the model's "length", answered as Claude's "max_tokens", read as pdbatch's name
    assert (out["finish_reason"] == "MAX_TOKENS").all()
    assert out["output_tokens"].tolist() == [3, 3]
    asked = sorted(model_server, key=lambda b: b["messages"][-1]["content"])[0]
    assert asked == {"model": "local-llama", "max_tokens": 9, "top_k": 3,
                     "messages": [{"role": "system", "content": "Be kind."},
                                  {"role": "user", "content": "Say bye."}]}

    model_server.clear()
    schema = {"type": "object", "properties": {"mood": {"type": "string"}},
              "required": ["mood"]}
    df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                            response_schema=schema, generation_config={"seed": 7})
    assert {json.dumps(b["response_format"]) for b in model_server} == {json.dumps(
        {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}})}
    assert {b["seed"] for b in model_server} == {7}


def test_a_forwarder_with_concurrency_keeps_each_answer_with_its_row(stack, staging,
                                                                     model_server):
    stack.service.responder.concurrency = 4
    _ChatServer.delay = 0.05
    df = pd.DataFrame({"prompt": [f"question {i}" for i in range(30)]})
    out = df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                  labels={"emulator-row-errors": "400-50"})
    answered = out["status"] == "ok"
    assert out["text"][answered].tolist() == [f"model says: question {i}"
                                              for i in range(30) if answered[i]]
    assert 0 < (~answered).sum() < 30 and (out["error_code"][~answered] == 400).all()
    assert len(model_server) == answered.sum()  # rows the service fails are not asked
    assert 1 < _ChatServer.most_in_flight <= 4  # in parallel, never more than asked for
