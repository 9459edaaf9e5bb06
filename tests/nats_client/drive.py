"""Drives Spoke connectors served on NATS with nats-py (2.16, from PyPI),
a client no one on the Spoke team wrote.

usage: drive.py NATS_URL

Expects `echo nats` and `faults nats` (tenant `default`) on that server.
Prints `ok` when every check passes; otherwise raises.
"""

import asyncio
import json
import sys

import nats
from nats.errors import NoRespondersError


async def main(url: str) -> None:
    nc = await nats.connect(url)
    try:
        # An action, through the queue group.
        msg = await nc.request(
            "spoke.default.echo.echo", json.dumps({"text": "from python"}).encode(), timeout=5
        )
        out = json.loads(msg.data)
        assert out.endswith("from python"), out
        assert not msg.headers, msg.headers

        # An action error: ADR-32's headers, and Spoke's JSON body.
        msg = await nc.request(
            "spoke.default.faults.fail",
            json.dumps({"code": "unavailable", "message": "try later"}).encode(),
            headers={"Spoke-Timeout": "5000"},
            timeout=5,
        )
        assert msg.headers["Nats-Service-Error"] == "try later", msg.headers
        assert msg.headers["Nats-Service-Error-Code"] == "503", msg.headers
        assert msg.headers["Spoke-Error-Code"] == "unavailable", msg.headers
        body = json.loads(msg.data)
        assert body == {
            "code": "unavailable",
            "message": "try later",
            "details": {"requested": "unavailable"},
        }, body

        # Discovery: $SRV.INFO names the service, its version, its endpoints.
        msg = await nc.request("$SRV.INFO.echo", b"", timeout=5)
        info = json.loads(msg.data)
        assert info["type"] == "io.nats.micro.v1.info_response", info
        assert info["name"] == "echo" and info["id"] == "py-echo", info
        subjects = {e["name"]: e["subject"] for e in info["endpoints"]}
        assert subjects["echo"] == "spoke.default.echo.echo", subjects
        assert subjects["spoke-describe"] == "spoke.default.echo.describe", subjects

        # The describe endpoint it names gives the manifest.
        msg = await nc.request(subjects["spoke-describe"], b"", timeout=5)
        manifest = json.loads(msg.data)
        assert [a["name"] for a in manifest["actions"]] == ["echo"], manifest

        # STATS counted the call above.
        msg = await nc.request("$SRV.STATS.echo.py-echo", b"", timeout=5)
        stats = {e["name"]: e for e in json.loads(msg.data)["endpoints"]}
        assert stats["echo"]["num_requests"] == 1, stats
        msg = await nc.request("$SRV.STATS.faults", b"", timeout=5)
        stats = {e["name"]: e for e in json.loads(msg.data)["endpoints"]}
        assert stats["fail"]["num_errors"] == 1, stats
        assert stats["fail"]["last_error"] == "503:try later", stats

        # Nobody serves this connector: nats-py's own error, at once.
        try:
            await nc.request("spoke.default.nobody.echo", b"{}", timeout=5)
            raise AssertionError("a request nobody serves was answered")
        except NoRespondersError:
            pass
    finally:
        await nc.close()
    print("ok")


asyncio.run(main(sys.argv[1]))
