"""Show what the engine makes of a feed, from a file or a URL, without touching the database."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from syncs.engine.fetch import FetchError, fetch_feed
from syncs.engine.parse.ical import FeedParseError, ParsedFeed, parse_feed
from syncs.explain import describe
from syncs.portals import BY_SLUG

FEED_ERROR_EXIT = 2


class Command(BaseCommand):
    help = "Print the nights the engine reads from a feed (a file path or an http(s)/webcal URL)."

    def add_arguments(self, parser):
        parser.add_argument("source", help="A file path or a URL.")
        parser.add_argument("--timezone", default="UTC", help="The property's time zone (default UTC).")
        parser.add_argument("--today", type=date.fromisoformat, help="Expand recurring events around this day (YYYY-MM-DD).")
        parser.add_argument("--portal", choices=sorted(BY_SLUG), help="Read labels as this portal's (default: from PRODID).")
        parser.add_argument("--json", action="store_true", dest="as_json", help="Print JSON (shape in the README).")

    def handle(self, *args, source: str, timezone: str, today: date | None, portal: str | None, as_json: bool, **options):
        try:
            feed = parse_feed(
                self._read(source),
                timezone=timezone,
                labels=BY_SLUG[portal].labels_as_lists() if portal else None,
                today=today,
                horizon_back_days=settings.SYNC_HORIZON_BACK_DAYS,
                horizon_ahead_days=settings.SYNC_HORIZON_AHEAD_DAYS,
            )
        except FetchError as exc:
            self._report_error(exc.code, describe(exc.code, exc.params), as_json=as_json)
        except FeedParseError as exc:
            self._report_error(exc.code, exc.message, as_json=as_json)
        else:
            report = self._report(feed, portal or feed.portal)
            self.stdout.write(_dumps(report) if as_json else self._as_text(report))

    def _read(self, source: str) -> bytes:
        if source.lower().startswith(("http://", "https://", "webcal://", "webcals://")):
            return fetch_feed(source, allow_loopback=settings.FETCH_ALLOW_LOOPBACK, user_agent=settings.FETCH_USER_AGENT).body
        path = Path(source)
        if not path.is_file():
            raise CommandError(f"No such file: {source}")
        return path.read_bytes()

    def _report(self, feed: ParsedFeed, portal: str | None) -> dict:
        return {
            "ok": True,
            "error": None,
            "prodid": feed.prodid,
            "portal": portal,
            "events": [
                {"uid": e.uid, "start": e.start.isoformat(), "end": e.end.isoformat(), "kind": e.kind, "summary": e.summary}
                for e in feed.events
            ],
            "skipped": [{"uid": s.uid, "reason": s.reason} for s in feed.skipped],
            "warnings": list(feed.warnings),
        }

    def _report_error(self, code: str, message: str, *, as_json: bool):
        if as_json:
            report = {"ok": False, "error": {"code": code, "message": message}, "prodid": None, "portal": None,
                      "events": [], "skipped": [], "warnings": []}
            self.stdout.write(_dumps(report))
        else:
            self.stderr.write(f"Feed error ({code}): {message}")
        raise SystemExit(FEED_ERROR_EXIT)

    def _as_text(self, report: dict) -> str:
        lines = [f"PRODID: {report['prodid'] or '-'}", f"Portal: {report['portal'] or 'not recognised'}",
                 f"Events: {len(report['events'])}"]
        lines += [f"  {e['start']} -> {e['end']}  {e['kind']:<9}  {e['summary']}  [{e['uid']}]" for e in report["events"]]
        if report["skipped"]:
            lines.append(f"Skipped: {len(report['skipped'])}")
            lines += [f"  {s['reason']}: {s['uid'] or '(no UID)'}" for s in report["skipped"]]
        lines += [f"Warning: {w}" for w in report["warnings"]]
        return "\n".join(lines)


def _dumps(report: dict) -> str:
    return json.dumps(report, ensure_ascii=False, indent=2)
