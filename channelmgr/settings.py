"""Settings for channelmgr, read from the environment only.

With no variables at all it runs on one machine: SQLite under var/, kombu's filesystem broker
under var/, console email, DEBUG on with a development key. ``.env.example`` lists every variable.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _
from kombu import Exchange, Queue

from channelmgr.env import env_bool, env_int, env_list, env_str, env_timezone, env_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", True)


def _started_as_celery_worker() -> bool:
    return "worker" in sys.argv[1:] and any(Path(arg).name.startswith("celery") for arg in sys.argv[:2])


# What this process is: "web" (gunicorn, management commands, tests) or "worker" (celery
# worker). Database connections are configured for each (see Database).
PROCESS_ROLE = env_str("PROCESS_ROLE", "worker" if _started_as_celery_worker() else "web")
if PROCESS_ROLE not in {"web", "worker"}:
    raise ImproperlyConfigured(f"PROCESS_ROLE must be web or worker; got {PROCESS_ROLE!r}")
DEMO_MODE = env_bool("DEMO_MODE", False)

_DEV_SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off (use a long random string).")
    SECRET_KEY = _DEV_SECRET_KEY

SITE_URL = env_url("SITE_URL", "http://localhost:8000", schemes=("http", "https")).rstrip("/")
SITE_HOST = urlsplit(SITE_URL).hostname or "localhost"
# UIDs of the events we export end with "@<this>", so our blocks coming back through a portal
# are recognised and dropped instead of reported as double bookings.
EXPORT_UID_DOMAIN = env_str("EXPORT_UID_DOMAIN", SITE_HOST)

# Loopback names stay allowed so that a container's own health check can reach /healthz.
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [SITE_HOST, "localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [SITE_URL] if not DEBUG else [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "axes",
    # Two-factor sign-in: authenticator apps (TOTP) and one-time recovery codes (static).
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    # The REST API (syncs.api), its OpenAPI schema, and Swagger UI's files served as our static files.
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "syncs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Before any view or form reads them: query strings and posts without control characters.
    "syncs.middleware.ControlCharactersMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Signed-in pages are never cached (Cache-Control: private, no-store), unless they say otherwise.
    "syncs.middleware.PrivatePagesMiddleware",
    # Whether this session passed the second factor (request.user.is_verified()).
    "django_otp.middleware.OTPMiddleware",
    # The language a signed-in user chose, over the browser's (after authentication, which it reads).
    "syncs.middleware.UserLanguageMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Ends a session whose membership was removed; then asks for the second factor where needed
    # (after messages, which they use to say why).
    "syncs.auth_middleware.MembershipSessionMiddleware",
    "syncs.auth_middleware.TwoFactorMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, so that it sees the outcome of authentication (django-axes' documented order).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "channelmgr.urls"
WSGI_APPLICATION = "channelmgr.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "syncs.context_processors.site",
                "syncs.roles.membership_context",
            ],
        },
    }
]

# --- Database ---------------------------------------------------------------------------------
_SQLITE_DEFAULT = f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
try:
    DATABASES = {"default": dj_database_url.parse(env_str("DATABASE_URL", _SQLITE_DEFAULT) or _SQLITE_DEFAULT)}
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL Django knows: {exc}") from exc
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the Celery worker write at the same time: wait for the lock instead of
    # failing ("database is locked"), take it at BEGIN so that no transaction has to be retried,
    # and use WAL so that readers never wait for writers.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    # Every wait on PostgreSQL is bounded, per process role: a web request's statements and a
    # worker's (which also never waits long for a row lock: a sync that cannot get its row
    # fails and is retried, it does not queue behind another); a new connection; and a peer
    # that vanished (TCP keepalives, and unacknowledged data given up after tcp_user_timeout).
    # A connection that is open but never answers is cut by syncs.engine.deadlines where a request
    # must answer (the export).
    _timeouts = {
        "statement_timeout": env_int("DATABASE_STATEMENT_TIMEOUT_MS", 30_000 if PROCESS_ROLE == "worker" else 10_000, minimum=0),
        "lock_timeout": env_int("DATABASE_LOCK_TIMEOUT_MS", 10_000 if PROCESS_ROLE == "worker" else 0, minimum=0),
        # A worker cut off from the database in the middle of a transaction (its machine lost)
        # is a session the server still holds open, with its row locks, for as long as it sees
        # the peer alive; ended after this long idle, so that its syncs can be taken over.
        "idle_in_transaction_session_timeout": env_int(
            "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS", 60_000 if PROCESS_ROLE == "worker" else 0, minimum=0
        ),
    }
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        connect_timeout=env_int("DATABASE_CONNECT_TIMEOUT", 3, minimum=2),
        keepalives=1, keepalives_idle=30, keepalives_interval=5, keepalives_count=3,
        tcp_user_timeout=env_int("DATABASE_TCP_USER_TIMEOUT_MS", 15_000, minimum=0),
        options=" ".join(f"-c {name}={value}" for name, value in _timeouts.items() if value),
    )
    if PROCESS_ROLE == "worker":
        # Worker threads share a bounded pool of connections (Django's psycopg pool): a sync
        # takes one to read and one to record, and holds none while it waits on a portal.
        DATABASES["default"]["OPTIONS"]["pool"] = {
            "min_size": 2, "max_size": env_int("DATABASE_POOL_SIZE", 8, minimum=2),
            "timeout": env_int("DATABASE_POOL_TIMEOUT", 10, minimum=1),
        }
    else:
        # A kept connection is checked before a request uses it. Pooled connections are not:
        # one that broke while idle fails its statement, which a sync records or retries.
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Keep connections between requests: opening one (and, on SQLite, its PRAGMAs) costs more than
# an export request. Pooled connections (workers) go back to their pool after each use instead.
DATABASES["default"]["CONN_MAX_AGE"] = (
    0 if "pool" in DATABASES["default"].get("OPTIONS", {}) else env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0)
)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth -------------------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# Lock an account out after repeated failures from one address, not the whole account for all.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = env_int("AXES_COOLOFF_MINUTES", 30, minimum=1) / 60
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
AXES_LOCKOUT_TEMPLATE = "registration/lockout.html"
# Reverse proxies in front of gunicorn (README, "Behind a reverse proxy"): none by default, and
# then X-Forwarded-For is never read. With N, the client is the N-th address from its right end.
PROXY_COUNT = env_int("PROXY_COUNT", 0, minimum=0)
AXES_CLIENT_IP_CALLABLE = "channelmgr.client_ip.client_ip"
AXES_USERNAME_CALLABLE = "channelmgr.client_ip.client_username"
# Members and sign-in (syncs.members, syncs.views.auth). A password-reset link works once, for
# this long (an hour: it is asked for by someone waiting for it, and a link that lives on in a
# mailbox is a way in); the first-run link of `create_account` and an invitation's link last
# longer, since they wait for someone who has not used the service yet.
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_HOURS", 1, minimum=1) * 3600
FIRST_PASSWORD_LINK_HOURS = env_int("FIRST_PASSWORD_LINK_HOURS", 72, minimum=1)
INVITATION_DAYS = env_int("INVITATION_DAYS", 7, minimum=1)
# The name authenticator apps show next to the codes.
OTP_TOTP_ISSUER = env_str("OTP_TOTP_ISSUER", "channelmgr")

# --- Languages and time -----------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("pt", _("Portuguese")), ("es", _("Spanish"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env_timezone("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static files -----------------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "staticfiles")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on every request when it is missing
STATIC_MANIFEST = env_bool("STATIC_MANIFEST", not DEBUG)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # Hashed names, gzip, and "cache for ever" from whitenoise; `make run` too (it collects first).
        "BACKEND": "channelmgr.static_storage.HashedStaticFilesStorage"
        if STATIC_MANIFEST
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# With the manifest, files are served from STATIC_ROOT as collected, even with DEBUG on.
WHITENOISE_AUTOREFRESH = DEBUG and not STATIC_MANIFEST
WHITENOISE_USE_FINDERS = DEBUG and not STATIC_MANIFEST

# --- Email ------------------------------------------------------------------------------------
EMAIL_HOST = env_str("EMAIL_HOST")
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL cannot both be on.")
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", f"channelmgr <noreply@{SITE_HOST}>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Cache ------------------------------------------------------------------------------------
# Shared by every web process and worker, so that limits count for all of them together
# (syncs.rate_limits): Redis when there is one, else a table of the database (made by the
# migrations). https://docs.djangoproject.com/en/5.2/topics/cache/
REDIS_URL = env_url("REDIS_URL", "", schemes=("redis", "rediss"))
CACHE_TABLE = "channelmgr_cache"
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "channelmgr",
        # A hung Redis costs a request two seconds, not the request.
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }
    if REDIS_URL
    else {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": CACHE_TABLE}
}

# --- Celery -----------------------------------------------------------------------------------
# The worker keeps many fetches in flight: syncs wait on portals, not on the CPU. A pool of
# threads (README, "Performance"): one process holds WORKER_CONCURRENCY syncs at once, and the
# Procfile starts one process per core (Python runs one thread of a process at a time).
CELERY_WORKER_POOL = env_str("WORKER_POOL", "threads")
CELERY_WORKER_CONCURRENCY = env_int("WORKER_CONCURRENCY", 100, minimum=1)
_BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env_url(
    "CELERY_BROKER_URL", REDIS_URL or "filesystem://", schemes=("redis", "rediss", "filesystem", "amqp", "memory")
)
if CELERY_BROKER_URL.startswith("filesystem://"):
    # One folder serves as both ends of the queue; the transport needs it to exist.
    for sub in ("queue", "processed", "control"):
        (_BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_BROKER_DIR / "queue"),
        "data_folder_out": str(_BROKER_DIR / "queue"),
        "processed_folder": str(_BROKER_DIR / "processed"),
        "control_folder": str(_BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    # A hung Redis must not hang a web request: connect and socket timeouts of 2 s, one quick
    # retry. The visibility timeout is longer than any task or retry delay (no redelivery loops).
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": 600,
        "socket_connect_timeout": 2,
        "socket_timeout": 2,
        "retry_on_timeout": False,
        "max_retries": 1,
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 0.5,
        "queue_order_strategy": "priority",
        # Every worker thread may ack at once.
        "max_connections": CELERY_WORKER_CONCURRENCY + 20,
    }
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# What a task prints stays on standard output rather than becoming log lines: the console email
# backend (no EMAIL_HOST: development) prints emails there whole, links included, as the web
# process does, since that is where a development machine reads them. Log lines go through
# settings.LOGGING's filter, which masks tokens (channelmgr/log_masking.py).
CELERY_WORKER_REDIRECT_STDOUTS = False
# Celery's Django fixup closes every database connection around each task unless this is set;
# channelmgr/celery.py does what Django does around a request instead (a pooled connection goes
# back to its pool, a kept one is kept unless it failed or is too old).
CELERY_DB_REUSE_MAX = 1000
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# Several deployments (or test runs) can share one Redis by using different queues.
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "celery")
# Beat's tasks have a queue of their own, listed first: a worker started without -Q serves both,
# and on Redis takes from the beat queue whenever it has something (priority order), so no
# backlog of syncs can delay or expire the dispatcher. Split: `-Q <beat queue>` on one worker,
# `-Q <queue>` on the others.
CELERY_BEAT_QUEUE = f"{CELERY_TASK_DEFAULT_QUEUE}.beat"
CELERY_TASK_QUEUES = [Queue(name, Exchange(name), routing_key=name) for name in (CELERY_BEAT_QUEUE, CELERY_TASK_DEFAULT_QUEUE)]
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
DISPATCH_INTERVAL_SECONDS = env_int("DISPATCH_INTERVAL_SECONDS", 60, minimum=5)
# An operator's action that no worker started within this long is handed to the broker again
# (syncs.jobs); each further wait is twice as long, up to ten minutes.
JOB_RESEND_AFTER_SECONDS = env_int("JOB_RESEND_AFTER_SECONDS", 60, minimum=1)
CELERY_BEAT_SCHEDULE = {
    "dispatch-due-syncs": {
        "task": "syncs.tasks.dispatch_due_syncs",
        "schedule": float(DISPATCH_INTERVAL_SECONDS),
        # A dispatcher message older than its interval is useless: the next one supersedes it.
        "options": {"expires": DISPATCH_INTERVAL_SECONDS * 0.9},
    },
    # Operators' actions a worker finishes (syncs.jobs): sent again when the broker lost them.
    "resend-jobs": {
        "task": "syncs.jobs.resend_jobs",
        "schedule": float(DISPATCH_INTERVAL_SECONDS),
        "options": {"expires": DISPATCH_INTERVAL_SECONDS * 0.9},
    },
    "send-pause-notifications": {
        "task": "syncs.notifications.send_pause_notifications",
        "schedule": 60.0,
        "options": {"expires": 54},
    },
    # Syncs whose state could have changed by time alone (stale, not read by their portal),
    # decided again (syncs.sync_state.state_sweep).
    "sweep-states": {"task": "syncs.tasks.sweep_states", "schedule": 60.0, "options": {"expires": 54}},
    "prune-history": {
        "task": "syncs.tasks.prune_history",
        "schedule": 24 * 3600.0,
        "options": {"expires": 3600},
    },
    "probe-paused-feeds": {
        "task": "syncs.tasks.probe_paused_feeds",
        "schedule": 300.0,
        "options": {"expires": 270},
    },
    # Operating at scale: double bookings and portals that stopped reading told to the webhooks,
    # lost webhook deliveries sent again, the members' daily digests.
    "scan-alerts": {"task": "syncs.webhooks.scan_alerts", "schedule": 60.0, "options": {"expires": 54}},
    "send-digests": {"task": "syncs.digests.send_digests", "schedule": 600.0, "options": {"expires": 540}},
}
# Calls to the outside world that are not portal fetches (webhooks, the operators' emails) go to
# a queue of their own, served only by the outgoing worker (Procfile: `-Q <queue>.outgoing`,
# a small pool of threads): a receiver or mail server that hangs holds its threads, never the
# syncs'. It is not in CELERY_TASK_QUEUES, and routed to as a Queue rather than by name, so that
# the sync workers (started without -Q) never serve it.
CELERY_OUTGOING_QUEUE = f"{CELERY_TASK_DEFAULT_QUEUE}.outgoing"
_OUTGOING = {"queue": Queue(CELERY_OUTGOING_QUEUE, Exchange(CELERY_OUTGOING_QUEUE), routing_key=CELERY_OUTGOING_QUEUE)}
OUTGOING_TASKS = (
    "syncs.webhooks.deliver_webhook", "syncs.notifications.send_pause_notifications", "syncs.digests.send_digests",
    "syncs.password_reset.password_reset_send",
)
# Every other task beat sends goes to beat's queue: one added to the schedule cannot be forgotten here.
CELERY_TASK_ROUTES = {
    **{entry["task"]: {"queue": CELERY_BEAT_QUEUE} for entry in CELERY_BEAT_SCHEDULE.values()},
    **dict.fromkeys(OUTGOING_TASKS, _OUTGOING),
}

# /metrics answers only with this token (Authorization: Bearer ...); unset, /metrics is a 404.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
# The worker's counters are files here, read by the web process (prometheus-client's
# multiprocess mode, syncs/metrics.py). Set before anything imports prometheus_client.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(VAR_DIR / "metrics")
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

# --- Sync engine ------------------------------------------------------------------------------
SYNC_DEFAULT_INTERVAL_MINUTES = env_int("SYNC_DEFAULT_INTERVAL_MINUTES", 30, minimum=5)
SYNC_LEASE_SECONDS = env_int("SYNC_LEASE_SECONDS", 120, minimum=30)
# Events are read from this many days back to this many days ahead (recurring ones expanded).
SYNC_HORIZON_BACK_DAYS = env_int("SYNC_HORIZON_BACK_DAYS", 30, minimum=0)
SYNC_HORIZON_AHEAD_DAYS = env_int("SYNC_HORIZON_AHEAD_DAYS", 730, minimum=30)
# History (sync runs, removed blocks, export read counts, expired export URLs) is kept this long.
RETENTION_DAYS = env_int("RETENTION_DAYS", 90, minimum=1)
# Held removals (shrink guard) apply when the same answer comes again this much later.
SHRINK_CONFIRM_MINUTES = env_int("SHRINK_CONFIRM_MINUTES", 30, minimum=1)
# At most this many fetches in flight to one portal host, per worker process (syncs.engine.fetch).
FETCH_PER_HOST_LIMIT = env_int("FETCH_PER_HOST_LIMIT", 8, minimum=1)
FETCH_USER_AGENT = env_str("FETCH_USER_AGENT", f"channelmgr-ical-sync/1.0 (+{SITE_URL}; calendar sync)")
# --- Export feeds -----------------------------------------------------------------------------
# Export URL tokens are derived from this key: changing it changes every export URL.
EXPORT_TOKEN_KEY = env_str("EXPORT_TOKEN_KEY", "") or f"export-token:{SECRET_KEY}"
EXPORT_ROTATION_GRACE_HOURS = env_int("EXPORT_ROTATION_GRACE_HOURS", 72, minimum=0)
EXPORT_HORIZON_DAYS = env_int("EXPORT_HORIZON_DAYS", 730, minimum=30)
# An export request that cannot read its calendar's version within this long answers 503.
EXPORT_DATABASE_DEADLINE_SECONDS = env_int("EXPORT_DATABASE_DEADLINE_SECONDS", 3, minimum=1)
# Reads of an export URL are written to the database at most this often per URL and process.
EXPORT_READ_FLUSH_SECONDS = env_int("EXPORT_READ_FLUSH_SECONDS", 60, minimum=0)

# Loopback fetching exists for tests and the demo portal only; never in production.
FETCH_ALLOW_LOOPBACK = env_bool("FETCH_ALLOW_LOOPBACK", DEMO_MODE)
if FETCH_ALLOW_LOOPBACK and not (DEBUG or DEMO_MODE):
    raise ImproperlyConfigured("FETCH_ALLOW_LOOPBACK is for tests and demo mode only (DEBUG or DEMO_MODE).")

# --- Security headers -------------------------------------------------------------------------
# Trusted only when set: any client can send X-Forwarded-Proto, and a request that says "https"
# is then treated as secure. Set it behind a proxy that terminates TLS and sets the header.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_HTTPS_PROXY", False) else None
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Every cookie we set is Secure behind HTTPS: the session's, CSRF's (and the messages', which
# follow the session's) and the language's.
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", SESSION_COOKIE_SECURE)
LANGUAGE_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
LANGUAGE_COOKIE_HTTPONLY = True  # read by the server only
SESSION_COOKIE_SAMESITE = "Lax"
LANGUAGE_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
        "base-uri": ["'self'"],
        "object-src": ["'none'"],
    }
}

# --- REST API (syncs.api) ------------------------------------------------------------------------
# https://www.django-rest-framework.org/api-guide/settings/
API_THROTTLE_RATE = env_str("API_THROTTLE_RATE", "600/min")  # per token (or signed-in person)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "syncs.api.authentication.BearerTokenAuthentication",
        # The signed-in session, CSRF enforced, in the account the person works in now.
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["syncs.api.permissions.RolePermission"],
    "DEFAULT_THROTTLE_CLASSES": ["syncs.api.throttles.TokenRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "syncs.api.problems.problem_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
# https://drf-spectacular.readthedocs.io/en/latest/settings.html
SPECTACULAR_SETTINGS = {
    "TITLE": "channelmgr API",
    "DESCRIPTION": "Properties, calendar syncs and their states, as the dashboard has them. "
    "Authenticate with `Authorization: Bearer <token>`; tokens are made on your profile page.",
    "VERSION": "1",
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "syncs.api.schema.problem_responses",
    ],
}

# --- Logging ----------------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL; got {LOG_LEVEL!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"mask_secrets": {"()": "channelmgr.log_masking.MaskSecretsFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler", "stream": sys.stderr, "formatter": "plain", "filters": ["mask_secrets"]
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # urllib3 logs each request's full path and query at DEBUG: feed URLs are secrets.
    "loggers": {
        # Django's own handlers (a console without the filter, while DEBUG) are dropped: its
        # records ("Not Found: /invitations/<token>/") go to ours, through the filter.
        "django": {"level": LOG_LEVEL},
        "urllib3": {"level": "INFO" if LOG_LEVEL == "DEBUG" else LOG_LEVEL},
        # Celery's two lines per task ("received", "succeeded"): each sync logs its own line.
        "celery.worker.strategy": {"level": "WARNING" if LOG_LEVEL == "INFO" else LOG_LEVEL},
        "celery.app.trace": {"level": "WARNING" if LOG_LEVEL == "INFO" else LOG_LEVEL},
    },
}

# --- Demo -------------------------------------------------------------------------------------
# Where the demo's import URLs point: the app's own /demo/portal/ feeds.
DEMO_PORTAL_BASE_URL = env_url("DEMO_PORTAL_BASE_URL", SITE_URL, schemes=("http", "https")).rstrip("/")
