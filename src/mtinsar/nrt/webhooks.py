"""Webhooks: a FeatureCollection of alerts POSTed to the configured URLs (`[nrt] webhooks`),
with retries and a time budget per URL. The only HTTP of the NRT updates; the job layer
calls it once per update, after the new version is written."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any

from mtinsar.config import NrtConfig

log = logging.getLogger(__name__)

#: Media type of the body (RFC 7946, section 12).
GEOJSON = "application/geo+json"


def post_alerts(collection: dict[str, Any], nrt: NrtConfig) -> list[dict[str, Any]]:
    """POST `collection` as JSON to every `nrt.webhooks` URL; never raises.

    Each URL gets up to 1 + `webhook_retries` attempts with exponential backoff, each with
    `webhook_timeout_s`, all within `webhook_max_s` [s]. Returns one record per URL: url,
    ok, status (HTTP code or None), attempts, error.
    """
    body = json.dumps(collection).encode()
    return [_post_one(url, body, nrt) for url in nrt.webhooks]


def _post_one(url: str, body: bytes, nrt: NrtConfig) -> dict[str, Any]:
    deadline = time.monotonic() + nrt.webhook_max_s
    wait, error, status = nrt.webhook_backoff_s, "", None
    for attempt in range(1, nrt.webhook_retries + 2):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": GEOJSON}
        )
        try:
            with urllib.request.urlopen(request, timeout=min(nrt.webhook_timeout_s, left)) as r:
                status = r.status
                return {"url": url, "ok": True, "status": status, "attempts": attempt, "error": ""}
        except urllib.error.HTTPError as exc:
            status, error = exc.code, f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            error = str(getattr(exc, "reason", exc))
        if attempt <= nrt.webhook_retries:
            time.sleep(max(0.0, min(wait, deadline - time.monotonic())))
            wait *= 2
    log.warning("webhook %s failed: %s", url, error)
    return {"url": url, "ok": False, "status": status, "attempts": attempt, "error": error}
