"""Every Prometheus metric HotelChat exports, defined once.

Names follow Prometheus conventions (https://prometheus.io/docs/practices/naming/): a `hotelchat_`
prefix, base units in the name (`_seconds`, `_usd`), `_total` on counters. Label values are
bounded: a hotel's slug, a route template, a job name, an error class from a fixed list; never a
guest, a phone number, a message id or free text.

Correct across processes: when PROMETHEUS_MULTIPROC_DIR is set (`hotelchat serve` with several
Hypercorn workers, several arq workers in one pod), each process writes its samples there and
`/metrics` aggregates them; gauges declare how (`livesum`, `max`, `mostrecent`).
https://prometheus.github.io/client_python/multiprocess/
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram

# prometheus_client opens its files in PROMETHEUS_MULTIPROC_DIR at the first metric below and fails
# if the folder is missing: a pod names one inside the empty volume it mounts at /tmp.
if _multiprocess_dir := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    Path(_multiprocess_dir).mkdir(parents=True, exist_ok=True)

# Latency buckets in seconds: webhooks and API calls are milliseconds, model calls are seconds.
FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SLOW = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0)
WAIT = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
HUMAN = (30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0)

# --- HTTP ---------------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "hotelchat_http_requests_total",
    "HTTP requests served, by route template, method and status code.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "hotelchat_http_request_duration_seconds",
    "Time to serve an HTTP request, by route template and method.",
    ["route", "method"],
    buckets=FAST,
)
WEBHOOK_INGEST = Histogram(
    "hotelchat_webhook_ingest_duration_seconds",
    "Time a Twilio webhook takes to verify, store, commit and queue, by webhook kind.",
    ["kind"],  # inbound | status
    buckets=FAST,
)
INBOUND_MESSAGES = Counter(
    "hotelchat_inbound_messages_total",
    "Guest messages stored (replays excluded), by hotel and channel.",
    ["hotel", "channel"],
)

# --- Socket.IO ----------------------------------------------------------------------------------
SOCKET_CLIENTS = Gauge(
    "hotelchat_socketio_connected_clients",
    "Socket.IO clients connected to this deployment, by namespace.",
    ["namespace"],
    multiprocess_mode="livesum",
)
SOCKET_RECEIVED = Counter(
    "hotelchat_socketio_events_received_total",
    "Socket.IO events received from clients, by namespace and event.",
    ["namespace", "event"],
)
SOCKET_EMITTED = Counter(
    "hotelchat_socketio_events_emitted_total",
    "Socket.IO events emitted (from web processes and workers), by namespace and event.",
    ["namespace", "event"],
)

# --- Jobs (arq) ---------------------------------------------------------------------------------
# The label is `job_name`: `job` is Prometheus's own target label and would be renamed on scrape.
QUEUE_DEPTH = Gauge(
    "hotelchat_queue_depth",
    "Jobs waiting in the queue, sampled by the workers.",
    ["queue"],
    multiprocess_mode="max",
)
QUEUE_OLDEST_AGE = Gauge(
    "hotelchat_queue_oldest_job_age_seconds",
    "Age of the oldest job waiting to start (0 when none is due), sampled by the workers.",
    ["queue"],
    multiprocess_mode="max",
)
JOB_WAIT = Histogram(
    "hotelchat_job_queue_wait_seconds",
    "Time from a job being enqueued (or becoming due) to its start, by job name.",
    ["job_name"],
    buckets=WAIT,
)
JOB_DURATION = Histogram(
    "hotelchat_job_duration_seconds",
    "Run time of one job attempt, by job.",
    ["job_name"],
    buckets=SLOW,
)
JOBS = Counter(
    "hotelchat_jobs_total",
    "Job attempts finished, by job and outcome (success, retry, failed).",
    ["job_name", "outcome"],
)

# --- AI -----------------------------------------------------------------------------------------
AI_TIME_TO_FIRST_TOKEN = Histogram(
    "hotelchat_ai_time_to_first_token_seconds",
    "Time from asking the model to its first token, by hotel and model.",
    ["hotel", "model"],
    buckets=SLOW,
)
AI_DURATION = Histogram(
    "hotelchat_ai_request_duration_seconds",
    "Time from asking the model to its complete answer (retries included), by hotel and model.",
    ["hotel", "model"],
    buckets=SLOW,
)
AI_TOKENS = Counter(
    "hotelchat_ai_tokens_total",
    "Tokens billed by the model provider, by hotel, model and kind (prompt, completion).",
    ["hotel", "model", "kind"],
)
AI_COST = Counter(
    "hotelchat_ai_cost_usd_total",
    "Model cost in US dollars from the provider's usage figures and the price table.",
    ["hotel", "model"],
)
AI_ERRORS = Counter(
    "hotelchat_ai_errors_total",
    "Model calls that failed, by hotel, model and error class (timeout, rate_limited, quota, "
    "server_error, auth, bad_request, connection, bad_response, circuit_open, budget).",
    ["hotel", "model", "error_class"],
)
AI_RETRIES = Counter(
    "hotelchat_ai_retries_total",
    "Calls to the model provider tried again, by operation (chat, embeddings) and the error "
    "class that caused it (timeout, connection, rate_limited, server_error).",
    ["operation", "error_class"],
)
AI_REPLIES = Counter(
    "hotelchat_ai_replies_total",
    "Automated replies stored, by hotel and responder (openai, knowledge_base, holding, cache).",
    ["hotel", "responder"],
)
AI_REPLIES_WITHHELD = Counter(
    "hotelchat_ai_replies_withheld_total",
    "Model replies the reply check withheld (the guest got a holding message and staff the "
    "conversation), by hotel and rule (prompt_leak, unstated_offer, unknown_code, unknown_link, "
    "unknown_email, unknown_phone).",
    ["hotel", "rule"],
)
AI_CIRCUIT_STATE = Gauge(
    "hotelchat_ai_circuit_state",
    "State of the shared circuit breaker on the model provider: 0 closed, 1 half-open, 2 open.",
    ["provider"],
    multiprocess_mode="max",
)
AI_BUDGET_USED = Gauge(
    "hotelchat_ai_budget_used_ratio",
    "Share of the hotel's monthly AI budget spent this month (1 = all of it).",
    ["hotel"],
    multiprocess_mode="mostrecent",
)

# --- Twilio -------------------------------------------------------------------------------------
TWILIO_SENDS = Counter(
    "hotelchat_twilio_sends_total",
    "Messages handed to Twilio, by outcome (sent, retry, failed, reconciled) and Twilio error "
    "code (empty when none).",
    ["outcome", "error_code"],
)
DELIVERY_STATUS = Counter(
    "hotelchat_delivery_status_transitions_total",
    "Delivery statuses our outbound messages moved to, from Twilio's status callbacks.",
    ["status"],
)

# --- PostgreSQL pool ----------------------------------------------------------------------------
DB_POOL_IN_USE = Gauge(
    "hotelchat_db_pool_connections_in_use",
    "Pooled PostgreSQL connections handed out right now.",
    multiprocess_mode="livesum",
)
DB_POOL_WAITING = Gauge(
    "hotelchat_db_pool_waiting",
    "Tasks waiting for a pooled PostgreSQL connection right now.",
    multiprocess_mode="livesum",
)
DB_POOL_SIZE = Gauge(
    "hotelchat_db_pool_connections",
    "Open PostgreSQL connections in the pool (in use or idle).",
    multiprocess_mode="livesum",
)
DB_POOL_MAX = Gauge(
    "hotelchat_db_pool_max_connections",
    "Most connections the pool may open.",
    multiprocess_mode="livesum",
)

# --- Business -----------------------------------------------------------------------------------
HANDOFFS = Counter(
    "hotelchat_handoffs_total",
    "Conversations handed to staff, by hotel and reason (model_error, no_answer, media, "
    "delivery_failed, guest_request, assistant_off, gave_up, budget, outage, guard).",
    ["hotel", "reason"],
)
HANDOFF_FIRST_REPLY = Histogram(
    "hotelchat_handoff_first_human_reply_seconds",
    "Time from a handoff to the first agent reply in that conversation, by hotel.",
    ["hotel"],
    buckets=HUMAN,
)
HANDOFF_OLDEST_UNANSWERED = Gauge(
    "hotelchat_handoff_oldest_unanswered_seconds",
    "Age of the oldest conversation handed to staff that no agent has answered yet (0: none).",
    ["hotel"],
    multiprocess_mode="max",
)

# --- Operator -----------------------------------------------------------------------------------
OPERATOR_RECONCILES = Counter(
    "hotelchat_operator_reconciles_total",
    "Reconciles of Hotel resources, by trigger (create, update, resume, timer, delete) and "
    "outcome (ready, not_ready, error).",
    ["trigger", "outcome"],
)
OPERATOR_RECONCILE_DURATION = Histogram(
    "hotelchat_operator_reconcile_duration_seconds",
    "Time one reconcile of a Hotel resource takes, by trigger.",
    ["trigger"],
    buckets=SLOW,
)
OPERATOR_HOTELS = Gauge(
    "hotelchat_operator_hotels",
    "Hotel resources the operator serves, by readiness (true, false).",
    ["ready"],
    multiprocess_mode="mostrecent",
)
