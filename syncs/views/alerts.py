"""Alerts where the team works: each member's emails, the properties assigned to members, and
the account's webhooks."""

from __future__ import annotations

from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_http_methods, require_POST

from syncs.activity import activity_record
from syncs.collation import by_name
from syncs.engine.fetch import FetchError, validate_url
from syncs.export_tokens import is_our_export
from syncs.forms import link_error
from syncs.id_inputs import parse_id, parse_ids
from syncs.models import Account, Activity, Membership, Property, Webhook, WebhookDelivery
from syncs.roles import Role, role_required
from syncs.views.confirm import Confirmation, confirmation_page, confirmed
from syncs.views.htmx import back
from syncs.webhooks import (
    TEST_LIMIT_PER_MINUTE,
    WebhookTestRefused,
    webhook_create,
    webhook_remove,
    webhook_send_test,
)


class MemberAlertsForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ["email_alerts", "email_digest", "language"]
        widgets = {"email_alerts": forms.RadioSelect}
        labels = {"language": gettext_lazy("Language of the emails")}


@require_http_methods(["GET", "POST"])
@login_required
def my_alerts(request: HttpRequest) -> HttpResponse:
    """Your emails in the account you work in now: which, how often, in which language."""
    membership = Membership.current_of(request.user)
    if membership is None:
        raise PermissionDenied(_("You are not a member of any account. Ask an account's owner to invite you."))
    form = MemberAlertsForm(request.POST if request.method == "POST" else None, instance=membership)
    if request.method == "POST" and form.is_valid():
        values = {field: form.cleaned_data[field] for field in form.Meta.fields}
        Membership.objects.filter(pk=membership.pk).update(**values)
        Membership.forget_current(request.user)
        messages.success(request, _("Email settings saved."))
        return redirect("my-alerts")
    assigned = by_name(membership.assigned_properties.values_list("pk", "name"), translation.get_language())[:200]
    return render(
        request, "syncs/my_alerts.html",
        {"form": form, "account": membership.account, "assigned": assigned,
         "assigned_count": membership.assigned_properties.count()},
    )


@require_POST
@login_required
@role_required(Role.MANAGER)
def property_assign(request: HttpRequest) -> HttpResponse:
    """Assign the ticked properties to a member (or take them away): "only properties assigned
    to me" emails follow."""
    account = Account.of_user(request.user)
    member = get_object_or_404(Membership.objects.filter(account=account), pk=parse_id(request.POST.get("member")))
    ids = list(Property.objects.for_account(account).filter(
        pk__in=parse_ids(request.POST.getlist("property"))
    ).values_list("pk", flat=True))
    assign = request.POST.get("assign") != "0"
    if not ids:
        messages.error(request, _("Select at least one property first."))
        return back(request, reverse("property-list"))
    with transaction.atomic():
        if assign:
            member.assigned_properties.add(*ids)
        else:
            member.assigned_properties.remove(*ids)
        activity_record(
            user=request.user,
            action=Activity.Action.PROPERTIES_ASSIGNED if assign else Activity.Action.PROPERTIES_UNASSIGNED,
            params={"count": len(ids), "member": member.user.get_username()},
        )
    words = (
        ngettext("%(n)d property assigned to %(member)s.", "%(n)d properties assigned to %(member)s.", len(ids))
        if assign else
        ngettext("%(n)d property taken away from %(member)s.", "%(n)d properties taken away from %(member)s.", len(ids))
    )
    messages.success(request, words % {"n": len(ids), "member": member.user.get_username()})
    return back(request, reverse("property-list"))


class WebhookForm(forms.Form):
    url = forms.CharField(
        label=gettext_lazy("URL"), max_length=2000,
        help_text=gettext_lazy("Where we POST the events, e.g. a Slack incoming webhook or your own service."),
        widget=forms.TextInput(attrs={"inputmode": "url", "autocomplete": "off", "spellcheck": "false"}),
    )
    events = forms.MultipleChoiceField(
        label=gettext_lazy("Tell it when"), choices=Webhook.Event.choices, widget=forms.CheckboxSelectMultiple,
        initial=Webhook.Event.values,
    )
    slack_text = forms.BooleanField(
        label=gettext_lazy("Add a text field (Slack, Mattermost, Teams)"), required=False,
        help_text=gettext_lazy("Chat tools that accept incoming webhooks show the field “text” as the message."),
    )

    def clean_url(self) -> str:
        url = "".join(self.cleaned_data["url"].split())
        if is_our_export(url):
            raise forms.ValidationError(_("This is one of our export links, not a webhook."))
        try:
            # Refused like every URL we fetch: private and special addresses, odd ports, credentials.
            return validate_url(url, allow_loopback=settings.FETCH_ALLOW_LOOPBACK, allow_any_port=settings.FETCH_ALLOW_LOOPBACK)
        except FetchError as exc:
            raise link_error(exc) from None


@require_http_methods(["GET", "POST"])
@login_required
@role_required(Role.MANAGER)
def webhooks(request: HttpRequest) -> HttpResponse:
    account = Account.of_user(request.user)
    form = WebhookForm(request.POST if request.method == "POST" else None)
    secret = ""
    created = None
    if request.method == "POST" and form.is_valid():
        created, secret = webhook_create(
            user=request.user, account=account, url=form.cleaned_data["url"], events=form.cleaned_data["events"],
            slack_text=form.cleaned_data["slack_text"],
        )
        form = WebhookForm()
    hooks = list(Webhook.objects.for_account(account))
    deliveries = {hook.pk: list(WebhookDelivery.objects.filter(webhook=hook).order_by("-created_at", "-pk")[:10]) for hook in hooks}
    labels = dict(Webhook.Event.choices)
    for hook in hooks:
        hook.removal = removal_words(hook)
        hook.recent = deliveries[hook.pk]
        hook.event_labels = [labels[event] for event in hook.events if event in labels]
        for delivery in hook.recent:
            delivery.event_label = labels.get(delivery.event, delivery.event)
    return render(
        request, "syncs/webhooks.html",
        {"account": account, "form": form, "hooks": hooks, "secret": secret, "created": created,
         "test_limit": TEST_LIMIT_PER_MINUTE},
    )


def _hook(request: HttpRequest, webhook_id: int) -> Webhook:
    return get_object_or_404(Webhook.objects.for_user(request.user), pk=webhook_id)


def removal_words(hook: Webhook) -> Confirmation:
    """What removing a webhook means: it cannot be undone, its secret cannot be shown again."""
    return Confirmation(
        title=_("Remove the webhook to %(host)s?") % {"host": urlsplit(hook.url).hostname or hook.url},
        sentences=[
            _("It stops receiving alerts at once, and the log of what was sent to it is deleted."),
            _("Its signing secret cannot be shown again: a webhook added back gets a new secret, which your receiver must then be given."),
        ],
        button=_("Yes, remove the webhook"),
    )


@require_POST
@login_required
@role_required(Role.MANAGER)
def webhook_remove_view(request: HttpRequest, webhook_id: int) -> HttpResponse:
    hook = _hook(request, webhook_id)
    if not confirmed(request):
        return confirmation_page(
            request, removal_words(hook), action=reverse("webhook-remove", args=[hook.pk]), cancel=reverse("webhooks")
        )
    webhook_remove(user=request.user, webhook=hook)
    messages.success(request, _("Webhook removed."))
    return redirect("webhooks")


@require_POST
@login_required
@role_required(Role.MANAGER)
def webhook_test(request: HttpRequest, webhook_id: int) -> HttpResponse:
    try:
        webhook_send_test(webhook=_hook(request, webhook_id))
    except Webhook.DoesNotExist:
        raise Http404 from None  # removed meanwhile
    except WebhookTestRefused as refused:
        if refused.reason == WebhookTestRefused.IN_FLIGHT:
            messages.error(request, _("A test is already on its way to this webhook: its answer appears below. Send another once it is there."))
        else:
            messages.error(request, ngettext(
                "At most %(n)d test a minute for each webhook: try again in a minute.",
                "At most %(n)d tests a minute for each webhook: try again in a minute.",
                TEST_LIMIT_PER_MINUTE,
            ) % {"n": TEST_LIMIT_PER_MINUTE})
        return redirect("webhooks")
    messages.info(request, _("Test sent: its answer appears below in a few seconds."))
    return redirect("webhooks")


