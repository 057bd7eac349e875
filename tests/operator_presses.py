"""Operators' presses made from a process of their own, through the services the pages call, as a
web process makes them: rows written, then handed to the broker after the commit (from
background threads, which this process waits for before it exits). tests/test_isolation.py runs
it with the workers' environment, so that its messages reach the workers' queues.

    python -m tests.operator_presses '[["notify"], ["send-test", [ID, ...], 150, 3.4]]'

Steps: ["sync-now", [ID, ...], presses a second] ("Sync now" on these syncs), ["send-test",
[ID, ...], presses, seconds] (on these webhooks, in turn), ["notify"] (the notifier's pass),
["wait"] (says "ready", then waits for a line on the standard input).
Prints what each step did, as one line of JSON.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor


def _paced(items: list, per_second: float):
    started = time.monotonic()
    for n, item in enumerate(items):
        time.sleep(max(0.0, started + n / per_second - time.monotonic()))
        yield item


def sync_now(ids: list[int], rate: float) -> dict:
    from syncs.models import Connection, Membership
    from syncs.sync_requests import connection_request_sync

    connections = Connection.objects.select_related("property__account").in_bulk(ids)
    owners = {m.account_id: m.user for m in Membership.objects.filter(role="owner").select_related("user")}
    for pk in _paced(ids, rate):
        connection = connections[pk]
        connection_request_sync(connection=connection, user=owners[connection.property.account_id])
    return {"pressed": len(ids)}


def send_test(ids: list[int], count: int, seconds: float) -> dict:
    from django.db import connections

    from syncs.models import Webhook
    from syncs.webhooks import WebhookTestRefused, webhook_send_test

    hooks = list(Webhook.objects.filter(pk__in=ids).select_related("account"))
    outcomes: Counter = Counter()

    def press(webhook: Webhook) -> None:
        try:
            webhook_send_test(webhook=webhook)
            outcomes["sent"] += 1
        except WebhookTestRefused as refused:
            outcomes[refused.reason] += 1
        finally:
            connections.close_all()

    # Several operators' tabs at once, as fast as the page allows.
    with ThreadPoolExecutor(max_workers=4) as pool:
        for n in _paced(list(range(count)), count / seconds):
            pool.submit(press, hooks[n % len(hooks)])
    return dict(outcomes)


def notify() -> dict:
    from syncs.notifications import pause_notifications_send

    return {"emails": pause_notifications_send()}


def wait() -> dict:
    """Say "ready" on the standard output, then wait for a line on the standard input: the test
    says when."""
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()
    return {}


STEPS = {"sync-now": sync_now, "send-test": send_test, "notify": notify, "wait": wait}


def main() -> None:
    """argv[1]: the steps, in order, as JSON: [["sync-now", [ids], rate], ["notify"], ...]."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "channelmgr.settings")
    import django

    django.setup()
    done = [STEPS[name](*args) for name, *args in json.loads(sys.argv[1])]
    # What was pressed is handed to the broker from background threads: let them finish.
    for thread in threading.enumerate():
        if thread is not threading.main_thread():
            thread.join(timeout=10)
    sys.stdout.write(json.dumps(done) + "\n")


if __name__ == "__main__":
    main()
