"""Odd input on every route: no value of any parameter a page reads, no header and no cookie
answers 500. Each gets the form's error, a message, a clamped date, a 400 or a 404.

The parameters are not listed by hand: a first, ordinary request to each route records every
key its view (and the forms it uses) reads from the query string and the post, and each of those
keys then gets each odd value in turn, the other fields staying ordinary. A key a view starts
reading tomorrow is sent odd values the same day.
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager

import pytest
from django.http import QueryDict
from django.test import Client
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from syncs.models import Membership
from tests.factories import MembershipFactory, UserFactory
from tests.test_views_access import (
    FORM,
    PUBLIC_ROUTES,
    account_objects,
    project_routes,
    route_kwargs,
)

pytestmark = pytest.mark.django_db

ODD = {
    "not a number": "abc",
    "a digit int() refuses": "\u00b2",
    "negative": "-1",
    "zero": "0",
    "beyond a 64-bit id": "99999999999999999999999",
    "a decimal": "1.5",
    "the last day of year 9999": "9999-12-31",
    "the first day of year 1": "0001-01-01",
    "year 10000": "10000-01-01",
    "a day that does not exist": "2027-02-30",
    "a far month": "9999-12",
    "1,000 characters": "x" * 1000,
    "a percent sign": "%",
    "an emoji": "\U0001f600",
    "another site": "//evil.example.com/",
    "a script link": "javascript:alert(1)",
    "a NUL": "\x00",
    "empty": "",
}
# What an ordinary request sends besides the route's own form: enough for each view to read
# its other fields (the profile's time zone form, a checklist action, a login).
ORDINARY = {
    **FORM, "form": "time_zone", "time_zone": "Europe/Lisbon", "username": "someone", "password": "not it",
    "q": "villa", "page": "1", "from": "2027-01-10", "nights": "30", "month": "2027-01", "member": "1", "property": "1",
    "connection": "1", "account": "1", "action": "sync_now", "next": "/properties/", "code": "123456", "check": "link",
    "night": "2027-01-20", "note": "checked", "url": "https://hooks.example.com/x", "events": "paused",
}
HTMX = {"HTTP_HX_REQUEST": "true"}
TOKEN_KWARGS = {"token": "abcdefghijklmnop", "uidb64": "MQ", "portal": "airbnb", "key": "casa-do-rio-airbnb", "step": "link"}


INTERNAL = ("django/utils/datastructures.py", "django/http/request.py")


@contextmanager
def keys_read():
    """Every key read from a QueryDict (request.GET, request.POST) meanwhile."""
    seen: set[str] = set()
    originals = {name: getattr(QueryDict, name) for name in ("__getitem__", "get", "getlist", "__contains__")}

    def spy(name):
        def read(self, key, *args, **kwargs):
            # Not the reads QueryDict makes of itself (items(), copy(), get() through [key]).
            if not sys._getframe(1).f_code.co_filename.endswith(INTERNAL):
                seen.add(key)
            return originals[name](self, key, *args, **kwargs)

        return read

    for name in originals:
        setattr(QueryDict, name, spy(name))
    try:
        yield seen
    finally:
        for name, original in originals.items():
            setattr(QueryDict, name, original)


@contextmanager
def quiet():
    """Error pages log their traceback: the assertion below says what failed."""
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def url_for(name: str, route: str, objects: dict) -> str:
    kwargs = route_kwargs(route, objects) | {k: v for k, v in TOKEN_KWARGS.items() if f"{k}>" in route}
    return reverse(name, kwargs=kwargs)


ROUTES = [(name, route) for name, route in project_routes() if name not in {"logout"}]


@pytest.fixture
def owner():
    return MembershipFactory(role=Membership.Role.OWNER)


def signed_in(client: Client, name: str, owner) -> Client:
    if name not in PUBLIC_ROUTES:
        client.force_login(owner.user)
    return client


def send(client: Client, method: str, url: str, data: dict, **headers):
    response = getattr(client, method)(url, data, **headers)
    return response.status_code


def send_signed_in(client: Client, name: str, owner, method: str, url: str, data: dict, **headers) -> int:
    """Send the request as the signed-in owner (on a route that needs one): the session of the
    last request is kept while it holds (a log-in per request costs more than most requests),
    and a request that found its owner signed out (a route ended the session) is sent again
    after a new log-in."""
    response = getattr(client, method)(url, data, **headers)
    if name in PUBLIC_ROUTES or response.wsgi_request.user.is_authenticated:
        return response.status_code
    signed_in(client, name, owner)
    return send(client, method, url, data, **headers)


@pytest.mark.parametrize(("name", "route"), ROUTES, ids=[name for name, _route in ROUTES])
def test_no_odd_value_of_any_parameter_a_route_reads_answers_500(client, owner, name, route):
    client.raise_request_exception = False
    objects = account_objects(owner.account, "My Villa")
    url = url_for(name, route, objects)
    failures = []
    with quiet():
        for method in ("get", "post"):
            signed_in(client, name, owner)
            with keys_read() as keys:
                status = send(client, method, url, ORDINARY)
            if status == 405:
                continue
            assert status < 500, f"{name}: the ordinary {method.upper()} answered {status}"
            for key in sorted(keys - {"csrfmiddlewaretoken"}):
                for n, (what, value) in enumerate(ODD.items()):
                    # Pages answer htmx with a part of themselves: a GET gets each value both
                    # ways, a POST (whose part is a row or a message) every other value each way.
                    both = ({}, HTMX)
                    for headers in both if method == "get" else (both[n % 2],):
                        status = send_signed_in(client, name, owner, method, url, {**ORDINARY, key: value}, **headers)
                        if status >= 500:
                            failures.append(f"{method.upper()} {name} {key}={what}{' (htmx)' if headers else ''}: {status}")
    assert failures == []


def test_the_second_factors_page_takes_odd_codes_and_next_pages(client):
    user = UserFactory(username="two-step")
    MembershipFactory(user=user)
    TOTPDevice.objects.create(user=user, name="app", confirmed=True)
    client.force_login(user)  # the password only: the code is still to come
    client.raise_request_exception = False
    url = reverse("two-factor-verify")
    failures = []
    with quiet():
        for key in ("code", "next"):
            for what, value in ODD.items():
                for method in ("get", "post"):
                    status = send(client, method, url, {"code": "123456", "next": "/", key: value})
                    if status >= 500:
                        failures.append(f"{method.upper()} {key}={what}: {status}")
    assert failures == []


ODD_HEADERS = {
    "an htmx request from an odd page": {"HTTP_HX_REQUEST": "true", "HTTP_HX_CURRENT_URL": "x" * 1000},
    "an htmx request from another site": {"HTTP_HX_REQUEST": "true", "HTTP_HX_CURRENT_URL": "javascript:alert(1)",
                                          "HTTP_HX_TARGET": "\U0001f600", "HTTP_HX_TRIGGER": "%"},
    "an htmx header that is not true": {"HTTP_HX_REQUEST": "maybe", "HTTP_HX_BOOSTED": "x"},
    "an odd browser language": {"HTTP_ACCEPT_LANGUAGE": "x" * 1000},
    "a broken browser language": {"HTTP_ACCEPT_LANGUAGE": "*;q=abc, pt-PT;q=9999999999999999999, es;q=-1"},
    "a language cookie of 1,000 characters": {"cookies": {"django_language": "x" * 1000}},
    "a language cookie that names no language": {"cookies": {"django_language": "../../etc/passwd"}},
    "a session cookie that is no session": {"cookies": {"sessionid": "\xff" * 100}},
    "a CSRF cookie that is no token": {"cookies": {"csrftoken": "x" * 1000}},
    "an odd user agent": {"HTTP_USER_AGENT": "x" * 10000},
    "an odd forwarded address": {"HTTP_X_FORWARDED_FOR": "not an address, 999.1.1.1", "HTTP_X_FORWARDED_PROTO": "gopher"},
}


@pytest.mark.parametrize("what", list(ODD_HEADERS))
def test_no_odd_header_or_cookie_answers_500_on_any_page(client, owner, what):
    client.raise_request_exception = False
    objects = account_objects(owner.account, "My Villa")
    headers = {key: value for key, value in ODD_HEADERS[what].items() if key != "cookies"}
    failures = []
    with quiet():
        for name, route in ROUTES:
            client.cookies.clear()
            signed_in(client, name, owner)
            for key, value in ODD_HEADERS[what].get("cookies", {}).items():
                client.cookies[key] = value
            status = client.get(url_for(name, route, objects), **headers).status_code
            if status >= 500:
                failures.append(f"GET {name}: {status}")
    assert failures == []


@pytest.mark.parametrize("odd_id", ["0", "99999999999999999999999", "9223372036854775808"])
def test_an_id_in_a_path_that_names_no_row_is_not_found(client, owner, odd_id):
    client.force_login(owner.user)
    client.raise_request_exception = False
    id_routes = [(name, route) for name, route in ROUTES if "<int:" in route]
    assert len(id_routes) >= 20
    failures = []
    with quiet():
        for name, route in id_routes:
            kwargs = {k: int(odd_id) for k in _int_kwargs(route)} | {k: v for k, v in TOKEN_KWARGS.items() if f"{k}>" in route}
            url = reverse(name, kwargs=kwargs)
            for method in ("get", "post"):
                status = getattr(client, method)(url).status_code
                if status not in (404, 405):
                    failures.append(f"{method.upper()} {url}: {status}")
    assert failures == []


def _int_kwargs(route: str) -> dict:
    return {part.split(">")[0].split(":")[1]: 1 for part in route.split("<")[1:] if part.startswith("int:")}


@pytest.mark.parametrize(
    "drill_down",
    [{"year": "9999", "month": "12", "day": "31"}, {"year": "9999", "month": "12"}, {"year": "9999"},
     {"year": "0001", "month": "01", "day": "01"}, {"year": "2027", "month": "02", "day": "30"}, {"year": "2027", "month": "13"},
     {"year": "abc"}, {"year": "99999999999999999999"}, {"year": "0"}],
    ids=lambda d: "-".join(d.values()),
)
def test_the_admins_date_drill_downs_at_the_ends_of_the_calendar_are_wrong_filters_not_errors(client, drill_down):
    from django.contrib import admin

    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    client.raise_request_exception = False
    lists = [(model, model_admin.date_hierarchy) for model, model_admin in admin.site._registry.items() if model_admin.date_hierarchy]
    assert len(lists) >= 8
    failures = []
    with quiet():
        for model, field in lists:
            query = {f"{field}__{part}": value for part, value in drill_down.items()}
            response = client.get(reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist"), query)
            if response.status_code >= 500:
                failures.append(f"{model._meta.label}: {response.status_code}")
    assert failures == []


def test_an_over_long_username_at_login_gets_the_forms_error_and_no_attempt_is_recorded(client):
    from axes.models import AccessAttempt

    page = client.post(reverse("login"), {"username": "u" * 300, "password": "whatever"})
    assert page.status_code == 200
    assert "Ensure this value has at most 150 characters (it has 300)." in page.content.decode()
    assert not AccessAttempt.objects.exists()  # refused before any password was checked


def test_an_over_long_time_zone_gets_the_forms_error(client, owner):
    client.force_login(owner.user)
    page = client.post(reverse("profile"), {"form": "time_zone", "time_zone": "Europe/" + "x" * 1000})
    assert page.status_code == 200
    assert "Ensure this value has at most 64 characters" in page.content.decode()
    assert Membership.objects.get(pk=owner.pk).time_zone == ""


def test_a_timeline_from_a_far_date_shows_the_nearest_it_can_and_says_so(client, owner):
    client.force_login(owner.user)
    for far in ("9999-12-31", "0001-01-01"):
        page = client.get(reverse("timeline"), {"from": far})
        assert page.status_code == 200
        assert "can be shown:" in page.content.decode()
        rows = client.get(reverse("timeline"), {"from": far, "page": "2"}, HTTP_HX_REQUEST="true")
        assert rows.status_code == 200
    assert "is not a date" in client.get(reverse("timeline"), {"from": "2027-02-30"}).content.decode()


def test_an_id_that_is_not_a_number_is_not_found_or_a_bad_request_and_changes_nothing(client, owner):
    from syncs.models import Activity

    objects = account_objects(owner.account, "My Villa")
    client.force_login(owner.user)
    member, prop, connection = objects["membership"], objects["property"], objects["connection"]
    activity = set(Activity.objects.filter(account=owner.account).values_list("pk", flat=True))  # made by the setting up
    for odd in ("abc", "\u00b2", "1.5", "-1", "99999999999999999999999", ""):
        assert client.post(reverse("property-assign"), {"member": odd, "property": prop.pk}).status_code == 404, odd
        assert client.post(reverse("property-assign"), {"member": member.pk, "property": [prop.pk, odd]}).status_code == 400, odd
        assert client.post(reverse("bulk-action"), {"action": "switch_off", "connection": [connection.pk, odd]}).status_code == 400, odd
        assert client.post(reverse("bulk-action"), {"action": "switch_off", "property": odd}).status_code == 400, odd
        assert client.post(reverse("account-switch"), {"account": odd}).status_code == 404, odd
    assert not member.assigned_properties.exists()
    connection.refresh_from_db()
    assert connection.enabled
    assert set(Activity.objects.filter(account=owner.account).values_list("pk", flat=True)) == activity
