"""A generated HTTP project's app, driven line by line from stdin, for store-outage tests.

Run inside the project's own environment (`uv run python harness/outage_driver.py PACKAGE`): it
imports only the standard library and the project. Each stdin line is a command; each answer is
one JSON line on stdout:

- `probe`: the status of /readyz, and of an add, a query and a delete, each with its
  Retry-After header;
- `wait ready` or `wait unready`: polls /readyz until it answers 200 or 503 (at most 120 s),
  then says whether it did;
- `add ID TEXT...`, `query TEXT...`: one call, its status and body.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from typing import Any

DEADLINE = 120.0


def answer(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def call(client: Any, method: str, path: str, body: dict | None = None) -> dict:
    response = client.request(method, path, json=body)
    return {
        "status": response.status_code,
        "retry_after": response.headers.get("retry-after"),
        "body": response.json() if response.content else None,
    }


def probe(client: Any) -> dict:
    return {
        "readyz": call(client, "GET", "/readyz")["status"],
        "add": call(client, "POST", "/documents", {"documents": [{"id": "p", "text": "probe"}]}),
        "query": call(client, "POST", "/query", {"text": "probe"}),
        "delete": call(client, "DELETE", "/documents/never-stored"),
    }


def wait(client: Any, ready: bool) -> bool:
    wanted = 200 if ready else 503
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if client.get("/readyz").status_code == wanted:
            return True
        time.sleep(0.2)
    return False


def main(package: str) -> None:
    server = importlib.import_module(f"{package}.server")
    settings = importlib.import_module(f"{package}.settings")
    testclient = importlib.import_module("fastapi.testclient")
    app = server.create_app(settings.Settings.from_env())
    with testclient.TestClient(app) as client:
        answer(started=True)
        for line in sys.stdin:
            command, *rest = line.split()
            if command == "probe":
                answer(**probe(client))
            elif command == "wait":
                answer(reached=wait(client, rest[0] == "ready"))
            elif command == "add":
                body = {"documents": [{"id": rest[0], "text": " ".join(rest[1:])}]}
                answer(**call(client, "POST", "/documents", body))
            elif command == "query":
                answer(**call(client, "POST", "/query", {"text": " ".join(rest), "k": 5}))


if __name__ == "__main__":
    main(sys.argv[1])
