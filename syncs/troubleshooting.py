"""The fix checklist: the seed article's troubleshooting, done by the software.

Each step runs its check, says in plain words what it found (pass, fail, needs you, waiting),
offers the action that fixes it, and is recorded per connection (who, when, what) so the
operator can leave and come back and a colleague can see where things stand.

Every step's state is decided from one fresh read of the sync (``Snapshot``), taken after the
action that changed it: after any action the whole checklist is decided again, so no step keeps
saying what was true before it. Two steps read the portal itself (``LIVE_STEPS``): they run
when asked, each in its own request, and between two such reads they follow what the sync's own
fetches say. While a sync runs, the open page looks again (``Snapshot.watching``) until it ends,
for a bounded time.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, npgettext

from syncs.activity import activity_record
from syncs.blocks import TEST_BLOCK_SUMMARY, block_create_manual, block_remove_manual
from syncs.conflicts import property_conflicts
from syncs.date_inputs import night_error, parse_day
from syncs.engine.fetch import (
    FetchError,
    FetchResult,
    fetch_feed,
    https_variant_works,
    validate_url,
)
from syncs.engine.parse.ical import FeedParseError, ParsedFeed, parse_feed
from syncs.explain import (
    clash_words,
    day,
    describe,
    describe_notice,
    describe_readers,
    describe_state,
    reader_name,
    since,
)
from syncs.export_tokens import export_token_ensure, export_url, is_our_export
from syncs.horizon import latest_checkout
from syncs.live_checks import CheckBusy, live_check_run
from syncs.models import (
    Activity,
    Block,
    BlockChange,
    ChecklistStep,
    Connection,
    ExportToken,
    PauseEpisode,
    Property,
)
from syncs.operator_actions import connection_set_enabled, connection_use_https
from syncs.portals import portal_for_host
from syncs.readers import connection_export_facts
from syncs.sync_labels import label_syncs
from syncs.sync_requests import connection_request_sync
from syncs.sync_state import SyncState, SyncStatus, connection_status

Status = ChecklistStep.Status

STEPS: tuple[tuple[str, str], ...] = (
    ("switched_on", gettext_lazy("Is the sync switched on?")),
    ("link", gettext_lazy("Is the portal's calendar link right?")),
    ("export_pasted", gettext_lazy("Is our export link pasted in the portal?")),
    ("resync", gettext_lazy("Run the sync again")),
    ("https", gettext_lazy("Try https")),
    ("final_check", gettext_lazy("Final check, both ways")),
    ("changes", gettext_lazy("What changed while the sync was paused")),
)
STEP_NAMES = dict(STEPS)

# Where each portal shows its calendar link, for us to read (the portal's menu calls it its
# export), and where our export link goes (the portal's import).
COPY_LINK = {
    "airbnb": gettext_lazy("In Airbnb: Calendar > Availability > Connect calendars > Export calendar, and copy the link."),
    "booking": gettext_lazy("In Booking.com: Rates & Availability > Sync calendars > Export calendar, and copy the link."),
    "vrbo": gettext_lazy("In Vrbo: Calendar > Import/Export > Export, and copy the link."),
    "google": gettext_lazy("In Google Calendar: Settings > the calendar > Secret address in iCal format."),
}
PASTE_LINK = {
    "airbnb": gettext_lazy("In Airbnb: Calendar > Availability > Connect calendars > Import calendar, paste it and name it."),
    "booking": gettext_lazy("In Booking.com: Rates & Availability > Sync calendars > Import calendar, paste it."),
    "vrbo": gettext_lazy("In Vrbo: Calendar > Import/Export > Import, paste it."),
    "google": gettext_lazy("In Google Calendar: Other calendars > + > From URL, paste it."),
}
# The note of the test block: stored in English, shown in each reader's language (block_note).
@dataclass
class Finding:
    ok: bool | None  # True: fine, False: the problem, None: for information
    text: str


@dataclass
class StepReport:
    step: str
    status: str
    summary: str
    findings: list[Finding] = field(default_factory=list)
    advice: str = ""
    data: dict = field(default_factory=dict)  # what the step's template needs, and what is stored

    @property
    def title(self) -> str:
        return str(STEP_NAMES[self.step])

    @property
    def status_label(self) -> str:
        return Status(self.status).label


# The steps that read the portal's calendar themselves, when asked: never on a page's poll.
LIVE_STEPS = frozenset({"link", "https"})


def _run_watched_for() -> timedelta:
    """How long after a sync was asked for (or a paused one switched back on) the open checklist
    keeps looking for its end: time for its job to be sent again once (syncs.jobs) and handed
    out, and for the task's own time limit. A sync nobody serves never keeps a page asking."""
    return timedelta(seconds=settings.JOB_RESEND_AFTER_SECONDS) + timedelta(minutes=1) + timedelta(
        seconds=settings.CELERY_TASK_TIME_LIMIT
    )


@dataclass(frozen=True)
class Snapshot:
    """One fresh read of the sync: what every step's state is decided from."""

    connection: Connection  # with its property and portal
    status: SyncStatus
    now: datetime

    @property
    def state(self) -> SyncState:
        return self.status.state

    @property
    def sync_running(self) -> bool:
        """A sync was asked for and has not ended, or a sync switched back on is being checked."""
        return self.connection.sync_requested_at is not None or self.state == SyncState.CHECKING

    @property
    def watching(self) -> bool:
        """Whether the open page looks again soon: while a sync runs, for a bounded time."""
        if not self.sync_running:
            return False
        connection = self.connection
        started = max(moment for moment in (connection.sync_requested_at, connection.checking_since) if moment)
        return self.now < started + _run_watched_for()


def checklist_snapshot(*, connection: Connection) -> Snapshot:
    """Read the sync afresh (one query, and its export readers for its state)."""
    fresh = Connection.objects.select_related("property", "portal").get(pk=connection.pk)
    now = timezone.now()
    return Snapshot(connection=fresh, status=connection_status(fresh, now=now), now=now)


@dataclass
class ChecklistRun:
    """The checklist after an action or a look: every step decided from one snapshot.

    ``reports`` holds the steps to show anew. A step that reads the portal (LIVE_STEPS) is there
    when it was the one asked, or when the sync's own fetch since its last reading says otherwise
    (then that fetch's result); it is in ``recheck`` when its last reading was of another link;
    otherwise it is left as the page shows it."""

    snapshot: Snapshot
    reports: dict[str, StepReport]
    recheck: list[str] = field(default_factory=list)
    whole: bool = True  # every step was decided (False: only the one asked)


def run_step(*, connection: Connection, step: str, user, action: str = "", form: dict | None = None) -> StepReport:
    """Run a step's check (after its action, if any) and record the result."""
    return checklist_run(connection=connection, user=user, step=step, action=action, form=form, every=False).reports[step]


def checklist_run(
    *, connection: Connection, user, step: str = "", action: str = "", form: dict | None = None,
    done: StepReport | None = None, every: bool = True, opening: bool = False,
) -> ChecklistRun:
    """1. Do the action of ``step`` (``done``: its result, when the caller did it).
    2. Read the sync once (``checklist_snapshot``).
    3. Decide ``step`` from that read (reading the portal, for a live step), and with ``every``
       every other step too, the live ones from the sync's own fetches (``opening`` the page:
       left to be read live, unless the portal has nothing to say).
    4. Record each result that is new (the step asked for, always: who checked it and when)."""
    progress = checklist_progress(connection=connection)
    stored = {name: row.data for name, row in progress.items()}
    noted = {}
    if action and done is None:
        noted = ACTIONS.get(step, _no_action)(connection, user=user, action=action, form=form or {},
                                             data=dict(stored.get(step, {})))
    snap = checklist_snapshot(connection=connection)
    run = ChecklistRun(snapshot=snap, reports={}, whole=every)
    for name in STEP_NAMES if every else (step,):
        own = noted if name == step else {}  # what the action did, for its own step
        if name == step and done is not None:
            report = done
        elif name == step or name not in LIVE_STEPS:
            report = CHECKS[name](snap, user=user, stored=own.get("data", stored.get(name, {})), noted=own)
        else:
            row = progress.get(name)
            report = _live_step_settled(name, snap) if opening else _live_step_followed(name, snap, row)
            if report is None:
                if not opening and _checked_other_link(snap, row):
                    run.recheck.append(name)
                continue
        run.reports[name] = report
        row = progress.get(name)
        if name == step or row is None or row.status != report.status or row.data != _storable(report.data):
            step_record(connection=snap.connection, report=report, user=user)
    return run


def _no_action(*_args, **_kwargs) -> dict:
    """Steps with no action of their own here (step 2's new link is the view's form): a look."""
    return {}


def step_record(*, connection: Connection, report: StepReport, user) -> None:
    """Keep a step's latest result, with who checked it and when."""
    ChecklistStep.objects.update_or_create(
        connection=connection, step=report.step,
        defaults={"status": report.status, "data": _storable(report.data), "checked_by": user, "checked_at": timezone.now()},
    )


def _link_digest(url: str) -> str:
    """Which link a live step read (stored with its result; the link itself is a secret)."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def _checked_other_link(snap: Snapshot, row: ChecklistStep | None) -> bool:
    return row is not None and row.data.get("link") != _link_digest(snap.connection.import_url)


def _live_step_followed(step: str, snap: Snapshot, row: ChecklistStep | None) -> StepReport | None:
    """A live step between two readings of the portal: what the sync's own fetches say, when
    that is decided without the portal, or when the sync fetched the same link since the step's
    reading and found otherwise. None: the page's last reading still stands (or is of another
    link: see ChecklistRun.recheck)."""
    connection = snap.connection
    settled = _live_step_settled(step, snap)
    if settled is not None or step == "https":
        return settled
    if row is None or _checked_other_link(snap, row):
        return None
    fetched = connection.last_attempt_at
    if fetched is None or fetched <= row.checked_at:
        return None
    works = not connection.last_error_code
    if works == (row.status == Status.PASSED):
        return None  # the sync's fetch says what the step's reading said
    return _link_from_sync(snap)


def _live_step_settled(step: str, snap: Snapshot) -> StepReport | None:
    """A live step's result when the portal has nothing to say: no link to read, or a link that
    already uses https."""
    connection = snap.connection
    if not connection.imports or (step == "https" and connection.import_url.startswith("https://")):
        return CHECKS[step](snap)
    return None


def _link_from_sync(snap: Snapshot) -> StepReport:
    """Step 2 as the sync's last fetch of the link found it."""
    connection, portal = snap.connection, snap.connection.portal
    data = {"link": _link_digest(connection.import_url), "from_sync": True}
    when = since(connection.last_attempt_at, snap.now)
    if connection.last_error_code:
        words = describe(connection.last_error_code, connection.last_error_params, portal=portal.display_name)
        return StepReport(
            "link", Status.FAILED, words,
            [Finding(False, _("The sync read this link %(ago)s ago: %(words)s") % {"ago": when, "words": words})],
            advice=_copy_again(portal), data=data,
        )
    return StepReport("link", Status.PASSED, _("The link works: the sync read its calendar without error %(ago)s ago.")
                      % {"ago": when}, data=data)


def _copy_again(portal) -> str:
    """Where to copy the portal's calendar link again."""
    return str(COPY_LINK.get(portal.slug, _("Copy %(portal)s's calendar link again.") % {"portal": portal.display_name}))


def _storable(data: dict) -> dict:
    return {key: value.isoformat() if isinstance(value, date) else value for key, value in data.items()}


def checklist_progress(*, connection: Connection) -> dict[str, ChecklistStep]:
    return {row.step: row for row in ChecklistStep.objects.filter(connection=connection).select_related("checked_by")}


# --------------------------------------------------------------------------- 1. switched on


def act_switched_on(connection: Connection, *, user, action: str, **_ignored) -> dict:
    if action == "switch_on":
        connection_set_enabled(connection=connection, enabled=True, user=user)
    return {}


def check_switched_on(snap: Snapshot, **_ignored) -> StepReport:
    """Step 1 says the sync's state (syncs/sync_state.py), as every page does: after "Switch it
    back on", that it is being checked until its next fetch has worked or failed, then which."""
    connection, status = snap.connection, snap.status
    words = describe_state(status, snap.now)
    state = status.state
    if state == SyncState.SWITCHED_OFF:
        return StepReport("switched_on", Status.NEEDS_YOU, _("The sync is switched off: nothing is imported or checked."),
                          advice=_("Switch it on when you are ready."), data={"can_switch_on": True})
    if state == SyncState.CHECKING:
        return StepReport("switched_on", Status.WAITING, _("Switched back on: checking its calendar now…"),
                          [Finding(None, words)], data={"checking": True})
    episode = PauseEpisode.objects.filter(connection=connection).order_by("-started_at", "-pk").first()
    if state == SyncState.PAUSED:
        reason = describe(connection.pause_reason, connection.pause_params, portal=connection.portal.name_in_sentence)
        if episode is not None and episode.resume_failed_at:
            summary = _("Switched back on, but the check failed %(ago)s ago: %(reason)s It is paused again.") % {
                "ago": since(episode.resume_failed_at, snap.now), "reason": reason,
            }
        else:
            summary = _("Paused since %(ago)s ago: %(reason)s") % {"ago": since(connection.paused_at, snap.now), "reason": reason}
        return StepReport(
            "switched_on", Status.FAILED, summary,
            advice=_("Fix the cause with the next steps; a sync that works again resumes it. Or switch it back on now."),
            data={"can_switch_on": True},
        )
    if state == SyncState.FAILING:
        return StepReport("switched_on", Status.FAILED, _("The sync is switched on, but it is failing: %(words)s") % {"words": words},
                          advice=_("Fix the cause with the next steps; after three failures in a row it pauses."))
    if state == SyncState.WAITING:
        return StepReport("switched_on", Status.WAITING, _("The sync is switched on. %(words)s") % {"words": words})
    findings = []
    if episode is not None and episode.ended_at and episode.ended_by in ("operator", "probe", "edit"):
        findings.append(Finding(True, _("Switched back on, and its calendar was read without error %(ago)s ago.") % {
            "ago": since(episode.ended_at, snap.now)}))
    if words:
        findings.append(Finding(None, words))
    return StepReport("switched_on", Status.PASSED, _("The sync is switched on and running."), findings)


# --------------------------------------------------------------------------- 2. the link


def check_link(snap: Snapshot, *, user=None, **_ignored) -> StepReport:
    """Walk the link the way a fetch does, saying at each stage what we found.

    Nothing is said about the name before the fetch has answered: a link to a private address
    gets the same refusal whatever its name resolves to, and "the name is found" would tell a
    user which internal names exist."""
    connection = snap.connection
    url = connection.import_url
    portal = connection.portal
    copy_again = _copy_again(portal)
    if not connection.imports:
        return StepReport("link", Status.PASSED, _("This sync only exports: there is no link to read."))
    findings = _shape_findings(url, connection)
    data = {"link": _link_digest(url)}
    if any(f.ok is False for f in findings):
        return StepReport("link", Status.FAILED, findings[-1].text, findings, advice=copy_again, data=data)
    try:
        validate_url(url, allow_loopback=settings.FETCH_ALLOW_LOOPBACK, allow_any_port=settings.FETCH_ALLOW_LOOPBACK)
        reading = live_check_run(
            user=user,
            work=lambda seconds: _read_link(
                url, timezone=connection.property.timezone, labels=portal.labels or None, seconds=seconds
            ),
        )
    except CheckBusy as busy:
        # Usually this checklist's own https check, started with it: the step asks again soon.
        return StepReport("link", Status.WAITING, busy.message, findings, data={"retry": True})
    except FetchError as error:
        reading = _LinkReading(fetch_error=error)
    report = _content_findings(connection, reading, findings, copy_again)
    report.data.update(data)
    return report


def _shape_findings(url: str, connection: Connection) -> list[Finding]:
    host = urlsplit(url).hostname or ""
    portal = connection.portal
    if is_our_export(url):
        return [Finding(False, _("This is a calendar we publish, pasted back here: it would read our own nights. Paste here the link the portal gives you."))]
    recognised = portal_for_host(host)
    if recognised is None:
        finding = Finding(None, _("We do not recognise the address %(host)s (fine for smaller portals).") % {"host": host})
    elif recognised.slug == portal.slug:
        finding = Finding(True, _("The address looks like a %(portal)s calendar link.") % {"portal": portal.display_name})
    else:
        finding = Finding(False, _("This looks like a link from %(other)s, but this sync is for %(portal)s.") % {"other": _(recognised.name), "portal": portal.display_name})
    return [finding]


@dataclass(frozen=True)
class _LinkReading:
    """What a live read of the link gave: the answer or why there was none, and the calendar or
    why it could not be read."""

    fetched: FetchResult | None = None
    fetch_error: FetchError | None = None
    feed: ParsedFeed | None = None
    parse_error: FeedParseError | None = None


def _read_link(url: str, *, timezone: str, labels: dict | None, seconds: float) -> _LinkReading:
    """Fetch and parse within ``seconds`` in all. Runs in a live check's thread: no database,
    no translations here."""
    expires = time.monotonic() + seconds
    try:
        fetched = fetch_feed(url, allow_loopback=settings.FETCH_ALLOW_LOOPBACK, user_agent=settings.FETCH_USER_AGENT,
                             deadline=seconds)
    except FetchError as error:
        return _LinkReading(fetch_error=error)
    try:
        feed = parse_feed(fetched.body, timezone=timezone, labels=labels, own_uid_domain=settings.EXPORT_UID_DOMAIN,
                          deadline=max(expires - time.monotonic(), 0.1))
    except FeedParseError as error:
        return _LinkReading(fetched=fetched, parse_error=error)
    return _LinkReading(fetched=fetched, feed=feed)


def _content_findings(connection: Connection, reading: _LinkReading, findings: list[Finding], copy_again: str) -> StepReport:
    portal = connection.portal
    url = connection.import_url
    if reading.fetch_error is not None:
        error = reading.fetch_error
        findings.append(Finding(False, describe(error.code, error.params, portal=portal.name_in_sentence)))
        return StepReport("link", Status.FAILED, findings[-1].text, findings, advice=copy_again)
    fetched = reading.fetched
    secure = _("over an encrypted connection") if url.startswith("https://") else _("over plain http (not encrypted)")
    findings.append(Finding(True, _("%(portal)s answered (HTTP %(status)s) %(secure)s.") % {"portal": portal.display_name, "status": fetched.status, "secure": secure}))
    if reading.parse_error is not None:
        findings.append(Finding(False, describe(reading.parse_error.code, portal=portal.name_in_sentence)))
        return StepReport("link", Status.FAILED, findings[-1].text, findings, advice=copy_again)
    feed = reading.feed
    findings.append(Finding(True, _("The content is a calendar.")))
    if feed.prodid:
        findings.append(Finding(None, _("Made by: %(prodid)s") % {"prodid": feed.prodid}))
    echoes = sum(1 for skipped in feed.skipped if skipped.reason == "own_export")
    if feed.events:
        first, last = min(e.start for e in feed.events), max(e.end for e in feed.events)
        findings.append(Finding(True, ngettext(
            "%(n)s booking or block, from %(first)s to %(last)s.",
            "%(n)s bookings and blocks, from %(first)s to %(last)s.",
            len(feed.events),
        ) % {"n": len(feed.events), "first": day(first), "last": day(last)}))
    elif echoes:
        findings.append(Finding(False, _("It holds only nights we published ourselves: this is probably our own export, not the portal's.")))
        return StepReport("link", Status.FAILED, findings[-1].text, findings, advice=copy_again)
    else:
        findings.append(Finding(None, _("The calendar is empty: no bookings or blocks right now.")))
    findings += [Finding(None, describe_notice(notice.code, notice.params)) for notice in feed.notices]
    return StepReport("link", Status.PASSED, _("The link works and gives a calendar."), findings)


def link_refused_report(connection: Connection) -> StepReport:
    """Step 2 when the pasted link was refused: the field says why; nothing was saved."""
    return StepReport("link", Status.FAILED, _("The new link was not saved: see why under the field."),
                      advice=_copy_again(connection.portal))


def link_saved_report(connection: Connection, *, found: str) -> StepReport:
    """Step 2 after the portal's new calendar link was pasted into it, read live and saved (the
    edit form's service): what the reading found. What the save did to the sync is said once,
    when it is done (a message); where the sync stands after it is step 1's to say, from each
    read of the checklist, so that nothing here goes out of date."""
    findings = [Finding(True, found)] if found else []
    return StepReport("link", Status.PASSED, _("The new link works and is saved."), findings,
                      data={"saved": True, "link": _link_digest(connection.import_url)})


# --------------------------------------------------------------------------- 3. our link pasted


def check_export_pasted(snap: Snapshot, **_ignored) -> StepReport:
    """Step 3: whether the portal reads our export link (its import), from who read it when."""
    connection = snap.connection
    portal = connection.portal
    if not connection.exports:
        return StepReport("export_pasted", Status.PASSED, _("This sync only imports: the portal does not read us."))
    token = export_token_ensure(property=connection.property, connection=connection)
    facts = connection_export_facts(connection=connection)
    words = describe_readers(facts, portal=portal.name_in_sentence)
    paste = str(PASTE_LINK.get(portal.slug, _("Paste it into %(portal)s's calendar import.") % {"portal": portal.display_name}))
    data = {"export_url": export_url(token)}
    if facts.state == "reading" and facts.old_url_read_at is None:
        return StepReport("export_pasted", Status.PASSED, words, data=data)
    if facts.state == "waiting":
        return StepReport("export_pasted", Status.WAITING, words, advice=paste, data=data)
    return StepReport("export_pasted", Status.FAILED, words, advice=paste, data=data)


# --------------------------------------------------------------------------- 4. sync again


def act_resync(connection: Connection, *, user, action: str, data: dict, **_ignored) -> dict:
    if action == "run" and connection_request_sync(connection=connection, user=user, origin="checklist"):
        data["requested_at"] = connection.sync_requested_at.isoformat()
    return {"data": data}


def check_resync(snap: Snapshot, *, stored: dict, **_ignored) -> StepReport:
    """Run the sync again: handed to a worker, as "Sync now" is, and followed until it is done
    (the checklist looks again while it runs): the page never waits on the portal. Any sync
    counts, whoever asked for it: a new link's first read too. A switched-off sync is not run."""
    connection = snap.connection
    portal = connection.portal.display_name
    if not connection.enabled:
        return StepReport("resync", Status.NEEDS_YOU, _("The sync is switched off: nothing is imported or checked."),
                          advice=_("Switch it on when you are ready."), data={"switched_off": True})
    data = {"requested_at": stored["requested_at"]} if stored.get("requested_at") else {}
    if connection.sync_requested_at is not None or snap.state == SyncState.CHECKING:
        return StepReport("resync", Status.WAITING, _("Syncing %(portal)s now: the result appears here.") % {"portal": portal},
                          data=data | {"running": True})
    run = connection.runs.order_by("-started_at", "-pk").first()
    requested = datetime.fromisoformat(data["requested_at"]) if data else None
    if requested is not None and (run is None or run.started_at < requested):
        return StepReport("resync", Status.WAITING, _("Another sync of this calendar was running: try again in a moment."))
    if run is None:
        return StepReport("resync", Status.NEEDS_YOU, _("Not synced yet: run it now."))
    words = describe(run.outcome, run.error_params, portal=connection.portal.name_in_sentence)
    when = _("%(ago)s ago") % {"ago": since(run.started_at, snap.now)}
    if run.error_code:
        return StepReport("resync", Status.FAILED, f"{words} ({when})", data={"run_id": run.pk})
    # Each count agrees with its own number ("1 añadido, 2 cambiados" in Spanish).
    counts = _("%(added)s, %(updated)s, %(removed)s.") % {
        "added": npgettext("bookings or blocks", "%(n)s added", "%(n)s added", run.events_added) % {"n": run.events_added},
        "updated": npgettext("bookings or blocks", "%(n)s changed", "%(n)s changed", run.events_updated) % {"n": run.events_updated},
        "removed": npgettext("bookings or blocks", "%(n)s removed", "%(n)s removed", run.events_removed) % {"n": run.events_removed},
    }
    return StepReport("resync", Status.PASSED, f"{words} {counts} ({when})", data={"run_id": run.pk})


# --------------------------------------------------------------------------- 5. https


def act_https(connection: Connection, *, user, action: str, **_ignored) -> dict:
    if action == "use_https":
        connection_use_https(connection=connection, user=user)
    return {}


def check_https(snap: Snapshot, *, user=None, **_ignored) -> StepReport:
    connection = snap.connection
    url = connection.import_url
    if not connection.imports or url.startswith("https://"):
        return StepReport("https", Status.PASSED, _("The link already uses https."))
    data = {"link": _link_digest(url)}
    try:
        works = live_check_run(
            user=user,
            work=lambda seconds: https_variant_works(
                url, allow_loopback=settings.FETCH_ALLOW_LOOPBACK, user_agent=settings.FETCH_USER_AGENT, deadline=seconds
            ),
        )
    except CheckBusy as busy:
        return StepReport("https", Status.WAITING, busy.message, data={"retry": True})
    except FetchError:  # no answer within the check's time
        works = False
    if works:
        return StepReport("https", Status.NEEDS_YOU, _("The https version of this link works: switch to it (an “s” added after http)."),
                          data=data | {"can_use_https": True})
    return StepReport("https", Status.INFO, _("The https version of this link does not answer: keep http, the portal offers no better."),
                      data=data)


# --------------------------------------------------------------------------- 6. final check, both ways


def suggested_test_night(connection: Connection) -> date | None:
    """The nearest night that nothing takes, from tonight on (in the property's zone): the test
    is over within hours, and a night far ahead tells the operator nothing more. None when every
    night up to the last day we keep is taken."""
    night = connection.property.local_today()
    last = latest_checkout(connection.property.local_today()) - timedelta(days=1)
    taken = Block.objects.current().filter(property=connection.property, end_date__gt=night, start_date__lte=last)
    for start, end in sorted(taken.values_list("start_date", "end_date")):
        if start <= night < end:
            night = end
    return night if night <= last else None


# States in which a sync's import works: its last fetch was read (a portal not reading our
# calendar, or removals held, say nothing against the import).
IMPORT_WORKS = frozenset({SyncState.WORKING, SyncState.HELD, SyncState.NOT_READING})


def test_night_audience(connection: Connection) -> list[str]:
    """Who will see a test night closed (see ``night_audience``)."""
    return night_audience(connection.property)


def night_audience(prop: Property) -> list[str]:
    """Who sees a night closed (or opened) here: it is in every calendar we publish for the
    property, so every portal that reads one of its export URLs: its syncs that export (by their
    labels), and whoever reads the property-wide calendar."""
    syncs = list(prop.connections.select_related("portal").order_by("portal__position", "pk"))
    labels = label_syncs(syncs)
    names = [labels[c.pk].label for c in syncs if c.exports]
    property_wide = ExportToken.objects.serving().filter(property=prop, connection__isnull=True)
    for slug in property_wide.exclude(last_reader="").values_list("last_reader", flat=True).distinct():
        name = reader_name(slug, portal=_("A calendar program"))
        if name not in names:
            names.append(name)
    return names


def act_final(connection: Connection, *, user, action: str, form: dict, data: dict) -> dict:
    """(a) add a test block here, (b) say which night was blocked on the portal, end the check,
    or look again. Neither test starts while the import fails: a night blocked on the portal
    cannot arrive, and a test night would stay closed everywhere for a check that cannot end."""
    now = timezone.now()
    if action in ("add_test_block", "portal_night") and connection.imports and not _final_started(data):
        connection.refresh_from_db()  # the state now, not the one the page was opened with
        if connection_status(connection).state not in IMPORT_WORKS:
            return {"data": data, "refused": _("Not yet: this check starts once the import works.")}
    refused = ""
    if action == "add_test_block":
        night = parse_day(form.get("night")) or suggested_test_night(connection)
        refused = _night_error(connection, night)
        if not refused:
            block = block_create_manual(property=connection.property, start=night, end=night + timedelta(days=1), summary=TEST_BLOCK_SUMMARY)
            activity_record(user=user, action=Activity.Action.TEST_BLOCK_ADDED, connection=connection,
                            params={"start": block.start_date.isoformat(), "end": block.end_date.isoformat()})
            data.update(test_block_id=block.pk, test_night=night.isoformat(), added_at=now.isoformat(), read_at=None)
    elif action == "portal_night":
        night = parse_day(form.get("night"))
        refused = _night_error(connection, night) if night else ""
        if night and not refused:
            data.update(portal_night=night.isoformat(), asked_at=now.isoformat(), seen_at=None)
    elif action == "finish":
        _remove_test_block(data, connection=connection, user=user)
        data = {}
    looking = action in ("portal_night", "recheck") and connection.imports and data.get("portal_night") and not data.get("seen_at")
    if looking and not Connection.objects.filter(pk=connection.pk, sync_requested_at__isnull=False).exists():
        # A worker syncs it; the checklist looks again while it runs.
        connection_request_sync(connection=connection, user=user, pressed=False)
    return {"data": data, "refused": refused}


def _final_started(data: dict) -> bool:
    return bool(data.get("added_at") or data.get("portal_night"))


def _final_watched_until(connection: Connection, data: dict) -> datetime:
    """The open step looks again every minute from the start of a test for the portal's longest
    usual delay (an hour at least): then it stops, and says so."""
    started = min(datetime.fromisoformat(data[key]) for key in ("added_at", "asked_at") if data.get(key))
    return started + timedelta(minutes=max(connection.portal.pickup_delay_max_minutes or 0, 60))


def check_final(snap: Snapshot, *, stored: dict, noted: dict | None = None, user=None, **_ignored) -> StepReport:
    """(a) a test block made here reaches the portal; (b) a night blocked on the portal reaches us."""
    connection = snap.connection
    data = dict(stored)
    refused = (noted or {}).get("refused", "")
    audience = test_night_audience(connection)
    if connection.imports and not _final_started(data) and snap.state not in IMPORT_WORKS:
        return StepReport(
            "final_check", Status.WAITING if snap.state == SyncState.CHECKING else Status.NEEDS_YOU,
            refused or _("This check starts once %(portal)s's calendar is read without error: fix the steps above first.")
            % {"portal": connection.portal.display_name},
            [Finding(False, describe_state(snap.status, snap.now) or snap.status.label)],
            data={"blocked_by_import": True, "audience": audience},
        )
    data.pop("blocked_by_import", None)  # the import works now
    data.pop("watch", None)
    findings = [_ours_to_portal(connection, data, now=snap.now), _portal_to_ours(connection, data, now=snap.now)]
    suggested = suggested_test_night(connection)
    data["suggested_night"] = suggested.isoformat() if suggested else None
    data["audience"] = audience
    if refused:
        findings.insert(0, Finding(False, refused))
    if all(f.ok for f in findings):
        _remove_test_block(data, connection=connection, user=user)
        return StepReport("final_check", Status.PASSED, _("Both ways work: the test block is removed."), findings, data=data)
    if not _final_started(data):
        return StepReport("final_check", Status.NEEDS_YOU, refused or _("Make a test on each side and wait for the portal."),
                          findings, data=data)
    until = _final_watched_until(connection, data)
    if snap.now < until:
        data["watch"] = True
    else:
        findings.append(Finding(None, _("We stopped looking %(ago)s ago, after %(portal)s's longest usual delay: press “Check again” to look now.")
                                % {"ago": since(until, snap.now), "portal": connection.portal.display_name}))
    return StepReport("final_check", Status.WAITING, refused or _("Make a test on each side and wait for the portal."), findings, data=data)


def _night_error(connection: Connection, night: date | None) -> str:
    """Why this night cannot be used for a test, or ""."""
    if night is None:
        return _("Every night up to the last day we keep is taken: choose a night yourself.")
    return night_error(night, today=connection.property.local_today())


def _ours_to_portal(connection: Connection, data: dict, *, now: datetime) -> Finding:
    portal = connection.portal
    if not connection.exports:
        return Finding(True, _("This sync only imports: nothing to check towards %(portal)s.") % {"portal": portal.display_name})
    if not data.get("added_at"):
        return Finding(None, _("Add a test block here; we watch for %(portal)s to read it.") % {"portal": portal.display_name})
    added = datetime.fromisoformat(data["added_at"])
    read = ExportToken.objects.filter(connection=connection, last_read_at__gt=added).order_by("last_read_at").values_list("last_read_at", flat=True).first()
    if read or data.get("read_at"):
        read = read or datetime.fromisoformat(data["read_at"])
        data["read_at"] = read.isoformat()
        return Finding(True, _("%(portal)s has read your calendar since the test block was added, %(took)s later.") % {
            "portal": portal.display_name, "took": since(added, read)})
    low, high = portal.pickup_delay_min_minutes, portal.pickup_delay_max_minutes
    usual = ngettext(
        "%(portal)s usually takes %(low)s to %(high)s minute.", "%(portal)s usually takes %(low)s to %(high)s minutes.", high
    ) % {"portal": portal.display_name, "low": low, "high": high} if high else ""
    return Finding(None, _("Waiting for %(portal)s to read the test block (added %(ago)s ago). %(usual)s") % {
        "portal": portal.display_name, "ago": since(added, now), "usual": usual})


def _portal_to_ours(connection: Connection, data: dict, *, now: datetime) -> Finding:
    portal = connection.portal
    if not connection.imports:
        return Finding(True, _("This sync only exports: nothing comes from %(portal)s.") % {"portal": portal.display_name})
    if not data.get("portal_night"):
        return Finding(None, _("Block one night on %(portal)s and tell us which; we sync until it appears here.") % {"portal": portal.display_name})
    night = date.fromisoformat(data["portal_night"])
    asked = datetime.fromisoformat(data["asked_at"])
    if not data.get("seen_at") and Block.objects.current().filter(source=connection, start_date__lte=night, end_date__gt=night).exists():
        data["seen_at"] = now.isoformat()
    if data.get("seen_at"):
        seen = datetime.fromisoformat(data["seen_at"])
        return Finding(True, _("The night of %(night)s blocked on %(portal)s reached us, %(took)s after you blocked it.") % {
            "night": day(night), "portal": portal.display_name, "took": since(asked, seen)})
    return Finding(None, _("Not here yet: we sync again every minute while this step is open. %(portal)s may take a while to publish it.") % {"portal": portal.display_name})


def _remove_test_block(data: dict, *, connection: Connection, user) -> None:
    block = Block.objects.filter(pk=data.get("test_block_id"), removed_at__isnull=True, source__isnull=True).first()
    if block is not None:
        block_remove_manual(block=block)
        activity_record(user=user, action=Activity.Action.TEST_BLOCK_REMOVED, connection=connection,
                        params={"start": block.start_date.isoformat(), "end": block.end_date.isoformat()})


# --------------------------------------------------------------------------- 7. changes while paused


def check_changes(snap: Snapshot, **_ignored) -> StepReport:
    connection = snap.connection
    episode = PauseEpisode.objects.filter(connection=connection).order_by("-started_at").first()
    if episode is None:
        return StepReport("changes", Status.PASSED, _("This sync has not been paused: nothing to review."))
    changes = (
        BlockChange.objects.filter(block__property=connection.property, run__started_at__gte=episode.started_at)
        .select_related("block__source__portal")
        .order_by("run__started_at")
    )
    findings = []
    for change in changes[:100]:
        source = change.block.source.portal.display_name if change.block.source_id else _("made here")
        start = change.new_start_date or change.old_start_date
        end = change.new_end_date or change.old_end_date
        findings.append(Finding(None, _("%(source)s: %(action)s %(start)s → %(end)s") % {
            "source": source, "action": change.get_action_display().lower(), "start": day(start), "end": day(end)}))
    for conflict in property_conflicts(property_ids=[connection.property_id]):
        findings.append(Finding(False, _("Possible double booking, %(nights)s: %(sources)s") % {
            "nights": clash_words(conflict.clash), "sources": ", ".join(conflict.sources)}))
    period = _("since the pause began %(ago)s ago") % {"ago": since(episode.started_at, snap.now)}
    if not findings:
        return StepReport("changes", Status.PASSED, _("No booking changed %(since)s.") % {"since": period})
    status = Status.FAILED if any(f.ok is False for f in findings) else Status.INFO
    summary = ngettext(
        "%(n)s change %(since)s: check these nights on both sides.",
        "%(n)s changes %(since)s: check each of these nights on both sides.",
        len(findings),
    ) % {"n": len(findings), "since": period}
    return StepReport("changes", status, summary, findings)


ACTIONS = {
    "switched_on": act_switched_on,
    "resync": act_resync,
    "https": act_https,
    "final_check": act_final,
}
CHECKS = {
    "switched_on": check_switched_on,
    "link": check_link,
    "export_pasted": check_export_pasted,
    "resync": check_resync,
    "https": check_https,
    "final_check": check_final,
    "changes": check_changes,
}

