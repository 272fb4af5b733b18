"""A W&B server on a local port, as much of it as a run needs to go online and upload its artifacts.

It speaks the GraphQL calls of wandb-core (the Go service of wandb 0.31; its queries are plain text in
``wandb/bin/wandb-core``): ``UpsertBucket`` (the run), ``ServerFeaturesQuery``, ``CreateArtifact``,
``CreateArtifactFiles`` (an upload URL per file), ``CreateArtifactManifest`` (an upload URL for the manifest),
``CommitArtifact``, ``CreateRunFiles``; the file stream; and PUT uploads to the URLs it handed out. It records every
operation (``requests``) and every artifact with its manifest and the bytes that arrived (``artifacts``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote


class FakeWandb:
    """The server on ``url``; ``stop()`` ends it. Files go up in one PUT each (it hands out no multipart URLs, which
    wandb asks for only for large files), and nothing is deduplicated (every file gets an upload URL)."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.artifacts: dict[str, dict[str, Any]] = {}  # id -> name, type, manifest, uploads, committed
        self.run_files: dict[str, bytes] = {}
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.startswith("/upload/"):
                    return self.reply(outer.upload(self.path, body))
                query = json.loads(body) if body.startswith(b"{") else {}
                named = re.search(r"(?:query|mutation)\s+(\w+)", query.get("query") or "")
                op = query.get("operationName") or (named.group(1) if named else self.path)
                with outer.lock:
                    outer.requests.append(op)
                    data = outer.answer(op, query.get("variables") or {})
                if self.path == "/graphql":
                    payload: Any = {"data": data}
                else:  # the file stream
                    payload = {"exitcode": None, "limits": {}}
                self.reply(payload)

            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.reply(outer.upload(self.path, body))

            def reply(self, payload: Any) -> None:
                out = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)
                outer.after_reply(self.path)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def after_reply(self, path: str) -> None:
        """Called after every reply (a subclass may die here)."""

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def upload(self, path: str, body: bytes) -> dict[str, Any]:
        parts = path.split("/", 3)  # "", "upload", kind, rest
        with self.lock:
            if parts[2] == "run":
                self.run_files[parts[3]] = body
            elif parts[2] == "manifest":
                self.artifacts[parts[3]]["manifest"] = json.loads(body)
            else:
                artifact_id, name = parts[3].split("/", 1)
                self.artifacts[artifact_id]["uploads"][unquote(name)] = body
        return {}

    def answer(self, op: str, v: dict[str, Any]) -> dict[str, Any]:
        if op == "UpsertBucket":
            project = {"id": "p", "name": v.get("project") or "trident", "entity": {"id": "e", "name": "e"}}
            return {"upsertBucket": {"inserted": True, "bucket": {
                "id": "b", "name": v.get("name"), "displayName": "run", "description": None, "config": "{}",
                "sweepName": None, "historyLineCount": 0, "project": project}}}
        if op == "Viewer":
            return {"viewer": {"id": "v", "entity": "e", "username": "e", "email": None, "flags": "{}",
                               "teams": {"edges": []}}}
        if op == "ArtifactType":  # the Python SDK's check that a logged name keeps its type: a new name
            return {"project": None}
        if op == "ServerFeaturesQuery":
            return {"serverInfo": {"features": []}}
        if op == "CreateArtifact":
            inp = v["input"]
            artifact_id = f"a{len(self.artifacts)}"
            self.artifacts[artifact_id] = {"name": inp.get("artifactCollectionName"),
                                           "type": inp.get("artifactTypeName"), "digest": inp.get("digest"),
                                           "manifest": None, "uploads": {}, "committed": False}
            return {"createArtifact": {"artifact": {"id": artifact_id, "state": "PENDING",
                                                    "artifactSequence": {"latestArtifact": None}}}}
        if op == "CreateArtifactFiles":
            edges = []
            for f in v["input"]["artifactFiles"]:
                url = f"{self.url}/upload/file/{f['artifactID']}/{quote(f['name'])}"
                edges.append({"node": {"storagePath": f"{f['artifactID']}/{f['name']}", "uploadUrl": url,
                                       "uploadHeaders": [], "uploadMultipartUrls": None,
                                       "artifact": {"id": f["artifactID"]}}})
            return {"createArtifactFiles": {"files": {"edges": edges}}}
        if op in ("CreateArtifactManifest", "UpdateArtifactManifest"):
            artifact_id = v.get("artifactID") or v.get("artifactManifestID", "m-")[2:]
            return {op[0].lower() + op[1:]: {"artifactManifest": {"id": f"m-{artifact_id}", "file": {
                "id": "f", "uploadUrl": f"{self.url}/upload/manifest/{artifact_id}", "uploadHeaders": []}}}}
        if op == "CommitArtifact":
            artifact = self.artifacts[v["artifactID"]]
            artifact["committed"] = True
            return {"commitArtifact": {"artifact": {"id": v["artifactID"], "digest": artifact["digest"]}}}
        if op == "CreateRunFiles":
            return {"createRunFiles": {"runID": "b", "uploadHeaders": [], "files": [
                {"name": name, "uploadUrl": f"{self.url}/upload/run/{name}"} for name in v["files"]]}}
        return {}  # everything else (telemetry, optional lookups): nothing

    def uploaded_files(self) -> list[tuple[str, str, int, str]]:
        """Every file of every committed artifact (see :meth:`rows`)."""
        return self.rows(list(self.artifacts.values()))

    @staticmethod
    def rows(artifacts: list[dict[str, Any]]) -> list[tuple[str, str, int, str]]:
        """Every file of the committed ``artifacts`` whose bytes arrived, as (artifact name, path in the artifact,
        size, MD5 in base64: the digest W&B's manifests list), sorted; one row per logged version. Asserts that the
        bytes match the uploaded manifest's entry and that every manifest entry was uploaded."""
        out = []
        for artifact in artifacts:
            if not artifact["committed"]:
                continue
            for path, entry in artifact["manifest"]["contents"].items():
                body = artifact["uploads"].get(path)
                assert body is not None, f"{artifact['name']}: {path} is in the manifest but was not uploaded"
                digest = base64.b64encode(hashlib.md5(body).digest()).decode()
                assert (len(body), digest) == (entry["size"], entry["digest"]), (path, entry)
                out.append((artifact["name"], path, len(body), digest))
        return sorted(out)
