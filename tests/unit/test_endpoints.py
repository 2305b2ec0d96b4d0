"""Broker and health server over real loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

from supervisor.core.state import DatabaseState, State
from supervisor.health import server as health
from supervisor.identity.broker import CredentialsBroker
from supervisor.identity.credentials import Credentials
from supervisor.identity.keeper import refresh_delay


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def creds(lifetime: float = 3600) -> Credentials:
    now = time.time()
    return Credentials("AKIDEXAMPLE", "secret-key-value-123", "session-token-value-456", now + lifetime, now)


def test_broker_requires_its_bearer_token() -> None:
    current: list[Credentials | None] = [None]

    async def scenario() -> None:
        broker = CredentialsBroker(lambda: current[0])
        address = await broker.start()
        assert address.url.startswith("http://127.0.0.1:") and address.authorization not in repr(address)
        get = lambda h=None: asyncio.to_thread(fetch, address.url, h)  # noqa: E731
        assert (await get())[0] == 401
        status, body = await get({"Authorization": "wrong"})
        assert status == 403 and "secret" not in body
        assert (await get({"Authorization": address.authorization}))[0] == 503
        current[0] = creds()
        status, body = await get({"Authorization": address.authorization})
        answer = json.loads(body)
        assert status == 200 and answer["SecretAccessKey"] == "secret-key-value-123"
        assert answer["Token"] == "session-token-value-456" and answer["Expiration"].endswith("Z")
        other = address.url.replace("/credentials", "/other")
        assert (await asyncio.to_thread(fetch, other, {"Authorization": address.authorization}))[0] == 404
        await broker.close()

    asyncio.run(scenario())


def test_health_endpoints_list_each_check() -> None:
    state = State()

    async def scenario() -> None:
        server = health.HealthServer(state, max_lag=5)
        port = await server.start("127.0.0.1", 0)
        base = f"http://127.0.0.1:{port}"
        get = lambda p: asyncio.to_thread(fetch, base + p)  # noqa: E731
        assert await get("/livez") == (200, "ok\n")
        status, body = await get("/readyz?verbose")
        assert status == 503 and "[-]started failed" in body and "[-]credentials failed: no credentials yet" in body
        state.started = True
        status, body = await get("/metrics")
        # one definition of ready: started but without credentials is not ready (item 20)
        assert "litestream_supervisor_ready 0.0" in body and (await get("/readyz"))[0] == 503
        state.started = True
        state.credentials_expiration = time.time() + 100
        state.child_running = True
        state.databases["/d/a.db"] = DatabaseState("/d/a.db", lag_seconds=1)
        status, body = await get("/readyz?verbose")
        assert status == 200 and "[+]litestream ok" in body and "[+]lag ok" in body
        assert "litestream_supervisor_ready 1.0" in (await get("/metrics"))[1]
        state.databases["/d/a.db"] = DatabaseState("/d/a.db", lag_seconds=9)
        status, body = await get("/readyz?verbose")
        assert status == 503 and "[-]lag failed: replication lag 9s > 5s" in body
        assert "litestream_supervisor_ready 0.0" in (await get("/metrics"))[1]
        status, body = await get("/readyz?exclude=lag&verbose")
        assert status == 200 and "lag" not in body  # a check left out, Kubernetes style
        assert (await get("/readyz?exclude=nonsense"))[0] == 400
        assert (await get("/livez?verbose")) == (200, "[+]event-loop ok\nok\n")
        state.loop_heartbeat -= 120  # a loop that stopped turning (the heartbeat task stamps it)
        status, body = await get("/livez?verbose")
        assert status == 503 and "[-]event-loop failed: event loop stalled" in body
        status, body = await get("/metrics")
        assert status == 200 and 'litestream_supervisor_replication_lag_seconds{db="/d/a.db"} 9.0' in body
        assert "litestream_supervisor_credentials_expiration_timestamp_seconds" in body
        await server.close()

    asyncio.run(scenario())


def test_refresh_schedule_keeps_validity_on_offer() -> None:
    hour = creds(3600)
    assert abs(refresh_delay(hour, 900, hour.obtained_at) - 2700) < 1  # 15 min left
    four_hours = Credentials("a", "b" * 20, "c" * 20, hour.obtained_at + 14400, hour.obtained_at)
    assert abs(refresh_delay(four_hours, 900, hour.obtained_at) - 13500) < 1
    short = Credentials("a", "b" * 20, "c" * 20, hour.obtained_at + 20, hour.obtained_at)
    assert abs(refresh_delay(short, 900, hour.obtained_at) - 10) < 1  # half-life, not a storm


def test_broker_compares_in_constant_time(monkeypatch) -> None:
    import hmac

    from supervisor.identity import broker as broker_mod

    calls: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(broker_mod.hmac, "compare_digest", spy)

    async def scenario() -> None:
        b = CredentialsBroker(lambda: creds())
        address = await b.start()
        status, _ = await asyncio.to_thread(fetch, address.url, {"Authorization": "nope"})
        assert status == 403
        await b.close()

    asyncio.run(scenario())
    assert calls and calls[0][0] == b"nope"
