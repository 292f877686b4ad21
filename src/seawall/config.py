"""Effective configuration: environment variables prefixed ``SEAWALL_`` over defaults."""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from seawall.redact import redact_url


def _default_home() -> Path:
    return Path.cwd() / "var"


# Tracing: well-known CDN and reverse-proxy networks, which mostly front other people's servers.
DEFAULT_CDN_ASNS = (
    13335,  # Cloudflare
    209242,  # Cloudflare (London)
    54113,  # Fastly
    20940,  # Akamai International
    16625,  # Akamai Technologies
    32787,  # Akamai (Prolexic)
    19551,  # Imperva Incapsula
    30148,  # Sucuri
    57724,  # DDoS-Guard
    15133,  # Edgecast
    22822,  # Limelight (Edgio)
    60068,  # CDN77
    200325,  # Bunny CDN
    33438,  # StackPath (Highwinds)
)


class Settings(BaseSettings):
    """Every setting Seawall reads. Each field is ``SEAWALL_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="SEAWALL_", env_file=None, extra="ignore")

    home: Path = Field(
        default_factory=_default_home, description="Data folder: database, index segments, evidence, logs."
    )
    database_url: str | None = Field(None, description="SQLAlchemy URL; default is SQLite in SEAWALL_HOME.")
    secret_key: SecretStr | None = Field(
        None, description="Signs sessions and CSRF tokens; generated into SEAWALL_HOME if unset."
    )
    host: str = Field("127.0.0.1", description="Address `seawall serve` binds.")
    port: int = Field(8000, description="Port `seawall serve` binds.")
    base_url: str | None = Field(None, description="Public URL of this instance, for links in notices and feeds.")
    log_level: str = Field("INFO", description="Log level.")
    log_json: bool | None = Field(None, description="JSON log lines; default: JSON unless writing to a terminal.")

    # sessions and accounts
    session_hours: float = Field(8.0, description="Console session lifetime in hours.")
    cookie_secure: bool = Field(False, description="Mark the session cookie Secure (set behind HTTPS).")
    login_max_failures: int = Field(5, description="Failed logins before an account is locked.")
    login_lockout_minutes: float = Field(15.0, description="How long a locked account stays locked.")

    # background work
    queue_url: str | None = Field(
        None, description="Task queue store: redis://… at scale; default SQLite file in SEAWALL_HOME."
    )
    queue_immediate: bool = Field(False, description="Run tasks inline instead of queueing (tests, single process).")
    audit_verify_cron: str = Field(
        "0 3 * * *", description="When the worker verifies the audit chain (cron: m h dom mon dow)."
    )

    # keyed audit chain and signed checkpoints (issue #10)
    audit_key_file: Path | None = Field(
        None,
        description="HMAC key of the audit chain, outside the database; default SEAWALL_HOME/audit.key, created "
        "0600. Every process that writes the database needs the same key.",
    )
    audit_signing_key_file: Path | None = Field(
        None,
        description="Ed25519 key that signs audit checkpoints; default SEAWALL_HOME/audit-signing.key, created 0600, "
        "its public key beside it as .pub.",
    )
    audit_checkpoint_file: Path | None = Field(
        None, description="Append-only file of signed audit checkpoints; default SEAWALL_HOME/audit-checkpoints.jsonl."
    )
    audit_checkpoint_cron: str = Field(
        "*/15 * * * *", description="When the worker signs the audit chain's head into a checkpoint (cron)."
    )

    # operational endpoints (issue #10)
    metrics_token: SecretStr | None = Field(
        None,
        description="Bearer token that may read /metrics and /readyz details (e.g. Prometheus); without it only "
        "credentials with the 'ops' scope may.",
    )

    # fetching URLs (capture, match by URL): SSRF-safe by default
    fetch_allow_networks: list[str] = Field(
        default_factory=list,
        description="CIDRs outgoing requests (fetches, webhooks, exchanges) may reach although not public.",
    )
    fetch_max_bytes: int = Field(100 * 1024 * 1024, description="Largest response body a fetch reads.")
    fetch_timeout_seconds: float = Field(20.0, description="Total time a fetch may take, redirects included.")
    fetch_max_redirects: int = Field(5, description="Redirects a fetch follows, each re-checked.")

    # the HMA-compatible API (/h, /m, /c): what it shows, as HMA's own configuration would
    hma_signal_types: list[str] = Field(
        default_factory=lambda: ["pdq", "video_md5"],
        description="Signal types the HMA-compatible API shows and accepts (HMA's names; also md5, sha1, "
        "sha256). /v1 always has every type.",
    )
    hma_index_stale_seconds: float = Field(
        60.0, description="/status answers INDEX-STALE (503) when the indexes were last refreshed longer ago."
    )

    # matching
    index_refresh_seconds: float = Field(0.5, description="How often a process applies list changes to its indexes.")
    match_low_quality: bool = Field(False, description="Match PDQ hashes of quality below 50 too.")
    match_regions: bool = Field(
        True,
        description="Match the regions of uploaded and scanned pictures too (borders trimmed, the picture "
        "embedded in a screenshot, a small rotation undone) and entries' trimmed-picture hashes; "
        "each list can also turn this off (docs/regions.md).",
    )
    vpdq_candidate_percent: float = Field(80.0, description="vPDQ: share of a listed video's frames that must match.")
    vpdq_query_percent: float = Field(0.0, description="vPDQ: share of the uploaded video's frames that must match.")
    quarantine_min_matches: int = Field(200, description="Matches in an hour before an entry can be quarantined.")
    quarantine_factor: float = Field(20.0, description="Quarantine at this many times the hourly baseline.")
    webhook_retry_base_seconds: float = Field(10.0, description="First webhook retry delay; doubles each attempt.")
    webhook_timeout_seconds: float = Field(10.0, description="Time a webhook receiver has to answer.")

    # lists
    false_positive_disable_threshold: int = Field(
        3, description="False-positive opinions that move an entry to disabled pending review."
    )

    # hotline: intake
    hotline_country: str = Field(
        "GB", description="The hotline's own country (ISO 3166 alpha-2): content hosted here gets a notice."
    )
    public_report_limit: int = Field(10, description="Reports one client may send through /report per hour.")
    public_status_limit: int = Field(30, description="Status look-ups one client may make per hour.")

    # self-report (a young person's own pictures, hashed in their browser)
    self_report_limit: int = Field(5, description="Self-reports one client may send per hour.")
    self_report_status_limit: int = Field(
        30, description="Self-report status look-ups and withdrawals per client per hour."
    )
    self_report_pending: bool = Field(
        True,
        description="New self-report entries carry the label 'pending' until the hotline checks them "
        "(a policy on that label decides whether platforms block or review first).",
    )
    self_report_exit_url: str = Field(
        "https://www.bbc.co.uk/weather", description="Where the self-report page's quick-exit button leads."
    )
    self_report_help: dict[str, list[dict[str, str]]] = Field(
        default_factory=lambda: {
            "GB": [{"name": "Childline", "phone": "0800 1111", "url": "https://www.childline.org.uk/"}],
            "FR": [{"name": "Allô enfance en danger", "phone": "119", "url": "https://www.allo119.gouv.fr/"}],
            "IE": [{"name": "Childline (ISPCC)", "phone": "1800 66 66 66", "url": "https://www.childline.ie/"}],
            "US": [{"name": "NCMEC Take It Down", "phone": "1-800-843-5678", "url": "https://takeitdown.ncmec.org/"}],
        },
        description="Help lines the self-report page shows, by country (JSON: {country: [{name, phone, url}]}); "
        "the hotline's own country comes first.",
    )

    # hotline: referrals to partner hotlines and to law enforcement
    hotline_name: str = Field(
        "Seawall hotline", description="This hotline's name, as referrals and law-enforcement packages give it."
    )
    referral_key_file: Path | None = Field(
        None, description="Ed25519 key that signs referrals; default SEAWALL_HOME/referral-signing.key (made 0600)."
    )
    referral_timeout_seconds: float = Field(20.0, description="Time a partner hotline has to answer a delivery.")
    referral_retry_base_seconds: float = Field(
        60.0, description="First retry delay of a referral or status update; doubles each attempt (6 h at most)."
    )
    referral_max_attempts: int = Field(12, description="Delivery attempts before a referral is marked failed.")
    referral_sweep_cron: str = Field(
        "* * * * *", description="When the worker re-queues due deliveries and sends referred cases' status."
    )
    # hotline: notice and takedown (XARF notices to hosts, re-checks until removed, escalation)
    notice_from: str | None = Field(
        None, description="From address of notices; also the contact (and its domain) the XARF report names."
    )
    notice_smtp_host: str | None = Field(None, description="SMTP server notices are sent through.")
    notice_smtp_port: int = Field(587, ge=1, le=65535, description="Its port.")
    notice_smtp_starttls: str = Field(
        "required", pattern="^(required|opportunistic|off)$", description="STARTTLS: required, opportunistic or off."
    )
    notice_smtp_ca_file: Path | None = Field(
        None, description="CA bundle the SMTP server's certificate is checked against (default: the system's)."
    )
    notice_smtp_user: str | None = Field(None, description="SMTP login name (none: no login).")
    notice_smtp_password: SecretStr | None = Field(
        None, description="SMTP password, sealed (`seawall notices seal-password` prints the sealed:… value)."
    )
    notice_smtp_password_file: Path | None = Field(
        None, description="File holding the SMTP password (0600; refused if others may read it)."
    )
    notice_timeout_seconds: float = Field(30.0, description="Time an SMTP server or a host's API has to answer.")
    notice_retry_base_seconds: float = Field(
        60.0, description="First retry delay of a notice that could not be sent; doubles each attempt (6 h at most)."
    )
    notice_max_attempts: int = Field(10, ge=1, description="Send attempts before a notice is marked failed.")
    notice_recheck_schedule: str = Field(
        "3600,21600,86400",
        pattern=r"^\s*\d+(\.\d+)?(\s*,\s*\d+(\.\d+)?)*\s*$",
        description="Seconds after sending of each re-check; then the last one repeats (1 h, 6 h, 24 h, daily).",
    )
    notice_reminder_after_seconds: float = Field(
        2 * 86400.0, description="A notice still not acted on this long after sending gets a reminder."
    )
    notice_escalate_after_seconds: float = Field(
        7 * 86400.0, description="A notice still not acted on this long after sending is escalated to law enforcement."
    )
    notice_escalation_folder: Path | None = Field(
        None, description="Escalation writes the case's law-enforcement package into a new folder here (none: no file)."
    )
    notice_sweep_cron: str = Field(
        "* * * * *", description="When the worker picks up notices due to be sent or re-checked (a crashed worker's)."
    )
    # hotline: tracing (where content is hosted, who to tell); offline unless RDAP is turned on
    trace_mmdb_country: Path | None = Field(
        None, description="MaxMind-format .mmdb giving an address's country (GeoLite2/DB-IP Country, or combined)."
    )
    trace_mmdb_asn: Path | None = Field(
        None, description="MaxMind-format .mmdb giving an address's AS number and name (GeoLite2/DB-IP ASN)."
    )
    trace_cidr_file: Path | None = Field(
        None, description="CSV of CIDR ranges, cidr,asn,as_name,country; wins over the .mmdb files where it speaks."
    )
    trace_cdn_asns: list[int] = Field(
        default_factory=lambda: list(DEFAULT_CDN_ASNS),
        description="AS numbers of CDNs and reverse proxies: an address in them is flagged as not the real host.",
    )
    trace_rdap: bool = Field(False, description="Look up abuse contacts over RDAP when the directory has none.")
    trace_rdap_bootstrap: Path | None = Field(
        None, description="Folder with IANA's RDAP bootstrap files ipv4.json and ipv6.json (needed for RDAP)."
    )
    trace_rdap_cache_days: float = Field(30.0, description="How long an RDAP answer is kept before asking again.")
    # hotline: assessment and QA
    hotline_qa_confirmations: int = Field(
        1, ge=1, le=5, description="QA confirmations, each by another senior analyst, that make an assessment final."
    )
    hotline_audit_share: float = Field(
        0.1, ge=0.0, le=1.0, description="Share of confirmed assessments sampled for the QA audit (0 to 1)."
    )
    hotline_hash_list: str = Field(
        "hotline-hashes", description="The hash list confirmed CSAM items' hashes go to (created on first use)."
    )
    hotline_url_list: str = Field(
        "hotline-urls", description="The URL list confirmed CSAM URLs go to (created on first use)."
    )
    # hotline: capture, the evidence store, thumbnails
    capture_max_media: int = Field(50, description="Media files one capture fetches from a page, at most.")
    capture_max_media_bytes: int = Field(
        50 * 1024 * 1024, description="Largest page or media file a capture fetches, in bytes."
    )
    capture_max_bytes: int = Field(
        200 * 1024 * 1024, description="Bytes one capture fetches in all (the page and its media)."
    )
    capture_timeout_seconds: float = Field(120.0, description="Total time one capture may spend fetching.")
    capture_min_image_side: int = Field(
        32, description="Images smaller than this (pixels, either side) are icons and spacers: not kept as items."
    )
    capture_user_agent: str = Field(
        "Mozilla/5.0 (compatible; Seawall capture)", description="User-Agent a capture sends."
    )
    evidence_key: SecretStr | None = Field(
        None, description="Master key of the evidence store (32 bytes, base64); else the key file is used."
    )
    evidence_key_file: Path | None = Field(
        None, description="Master key file of the evidence store; default SEAWALL_HOME/evidence.key, made 0600."
    )
    thumbnail_size: int = Field(256, description="Longest side of a thumbnail (one tile of a video's strip), px.")
    thumbnail_blur: float = Field(8.0, description="Gaussian blur radius of thumbnails, in thumbnail pixels.")

    # request bodies (issue #10): caps by route in src/seawall/web/limits.py; uploads are capped at
    # max_file_bytes plus the multipart envelope, console and public forms at 128 KiB
    max_body_bytes: int = Field(
        2 * 1024 * 1024, description="Largest JSON body of an API call (bulk routes and uploads have their own caps)."
    )
    max_bulk_body_bytes: int = Field(
        16 * 1024 * 1024,
        description="Largest body of a bulk API call: entries added or retired, report batches, referrals, text "
        "matching.",
    )
    max_import_bytes: int = Field(
        256 * 1024 * 1024, description="Largest list file uploaded to POST /v1/lists/{name}/import."
    )

    # bulk scanning (seawall scan)
    scan_partition_items: int = Field(
        256, ge=1, description="Files of a folder or object store in one scan partition (one checkpoint each)."
    )
    scan_max_depth: int = Field(3, ge=0, description="Archives inside archives a scan opens, at most.")
    scan_max_expanded_bytes: int = Field(
        4 * 1024 * 1024 * 1024,
        description="Bytes one archive (with the archives in it) may expand to before the rest is an error.",
    )
    scan_max_members: int = Field(100_000, description="Members one archive (with those inside) may hold at most.")
    # media decoding limits
    max_image_pixels: int = Field(100_000_000, description="Largest image, in pixels, that is decoded.")
    max_file_bytes: int = Field(512 * 1024 * 1024, description="Largest media file, in bytes, that is read.")
    max_video_seconds: float = Field(4 * 3600.0, description="Longest video, in seconds, that is hashed.")
    max_video_pixels: int = Field(8192 * 8192, description="Largest video frame, in pixels.")
    max_video_frames: int = Field(1_000_000, description="Most frames hashed from one video.")
    # decode budget and concurrency of the server (issue #10): what one request may cost
    max_decode_pixels: int = Field(
        400_000_000,
        description="Most pixels one request may decode from an image or animated GIF/WebP, over all its frames; "
        "checked from the headers before decoding and again while decoding (video: the max_video_* limits).",
    )
    max_animation_frames: int = Field(1000, description="Most frames hashed from one animated GIF/WebP.")
    max_decode_seconds: float = Field(120.0, description="Longest time one request may spend decoding and hashing.")
    decode_concurrency: int = Field(
        default_factory=lambda: os.cpu_count() or 2,
        description="Decodes one server process runs at once (default: the CPU count); more wait, then get 503.",
    )
    decode_wait_seconds: float = Field(
        2.0, description="How long a request waits for a decode slot before the 503 (with Retry-After)."
    )
    fetch_per_key: int = Field(4, description="URL fetches one API key may have in flight at once; more get 429.")
    fetch_min_bytes_per_second: float = Field(
        1024.0, description="A fetch whose body arrives slower than this, after the grace period, is aborted."
    )
    fetch_rate_grace_seconds: float = Field(5.0, description="Seconds before the minimum transfer rate applies.")
    # review console and analyst wellbeing (issue #13); per-role overrides in review_role_limits
    review_claim_minutes: float = Field(
        20.0, gt=0, description="How long an analyst's claim on an item or case lasts before it returns to the queue."
    )
    review_reveal_minutes: float = Field(
        5.0, gt=0, description="How long a reveal's one-item URL serves the original media after the reveal."
    )
    review_blur: float = Field(
        8.0, ge=0, le=24, description="Organisation default: extra blur of the review thumbnail (0-24, pixels)."
    )
    review_greyscale: bool = Field(True, description="Organisation default: revealed media shown in greyscale.")
    review_reveal_on_hold: bool = Field(
        False, description="Organisation default: media stay revealed only while the reveal key is held."
    )
    review_break_suggest_minutes: float = Field(
        50.0, gt=0, description="Continuous review time after which the console suggests a break."
    )
    review_break_enforce_minutes: float = Field(
        60.0, gt=0, description="Continuous review time after which the queues refuse work until a break."
    )
    review_break_minutes: float = Field(
        10.0, gt=0, description="A gap in review work this long counts as a break (and ends an enforced one)."
    )
    review_daily_cap_hours: float = Field(
        4.0, gt=0, description="Review time per analyst per day after which the queues refuse work (IWF: 4 h)."
    )
    review_role_limits: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description='Per-role wellbeing limits over the defaults, JSON: {"senior_analyst": '
        '{"break_suggest_minutes": 60, "break_enforce_minutes": 75, "break_minutes": 10, "daily_cap_hours": 5}}.',
    )
    review_support_text: str = Field(
        "Step away from the screen, stretch, get some daylight or a drink. If something you saw stays with "
        "you, talk to your team leader or the staff support service: you do not have to carry it alone.",
        description="Text on the break screen.",
    )
    review_support_links: list[str] = Field(
        default_factory=list,
        description='Links on the break screen, each "Label|https://…" (JSON list), e.g. the welfare service.',
    )

    # statistics
    timezone: str = Field(
        "UTC", description="The hotline's time zone (IANA name): statistics count in its calendar days and periods."
    )
    stats_public: bool = Field(
        False, description="Publish the annual statistics report at /public/stats/report (aggregates only)."
    )
    stats_public_threshold: int = Field(
        10, ge=1, description="On the public report, a figure below this count is shown suppressed ('<N')."
    )

    # authority reporting and the evidence vault (issue #15; docs/reporting.md)
    reporting_authorities: list[str] = Field(
        ["ncmec"], description="Authorities a confirmed decision drafts a report for: ncmec, nca."
    )
    reporting_operator_is_reporter: bool = Field(
        False, description="Draft authority reports for the hotline's own cases too, not only platform content."
    )
    reporting_auto_submit: bool = Field(
        False, description="Submit drafts from confirmed decisions without a person's approval (operator policy)."
    )
    reporting_jurisdiction: str = Field("US", description="Jurisdiction of new reports (decides their retention).")
    reporting_platform: str | None = Field(None, description="The service's name, as reports name the platform.")
    reporting_reporter_first_name: str | None = Field(None, description="Reporting person's first name.")
    reporting_reporter_last_name: str | None = Field(None, description="Reporting person's last name.")
    reporting_reporter_email: str | None = Field(None, description="Reporting person's email (NCMEC requires it).")
    reporting_reporter_phone: str | None = Field(None, description="Reporting person's telephone.")
    reporting_retry_base_seconds: float = Field(
        60.0, gt=0, description="First retry of a failed submission step; doubles each attempt."
    )
    reporting_max_attempts: int = Field(8, ge=1, description="Attempts before a submission is marked failed.")
    cybertipline_url: str = Field(
        "https://exttest.cybertip.org/ispws",
        description="CyberTipline Reporting API base URL (NCMEC's test host until you switch to production).",
    )
    cybertipline_timeout_seconds: float = Field(60.0, gt=0, description="Time NCMEC has to answer one call.")
    cybertipline_hash_sharing_mou: bool = Field(
        False, description="Send industryClassification (only ESPs that signed NCMEC's hash-sharing MOU may)."
    )
    nca_api_url: str | None = Field(None, description="NCA reporting API endpoint (not public: from the NCA).")
    nca_reference_field: str = Field("reference", description="Field of the NCA API's answer naming its reference.")
    nca_priority_hours: list[float] = Field(
        [1.0, 24.0, 72.0],
        description="Operator deadlines for NCA priorities 1, 2, 3 in hours (the regulations give no hours).",
    )
    retention_days: dict[str, int] = Field(
        {"US": 365, "GB": 365}, description="Days evidence of a report is kept after it is filed, by jurisdiction."
    )
    retention_default_days: int = Field(365, ge=1, description="Retention for a jurisdiction not listed.")
    evidence_previous_keys: SecretStr | None = Field(
        None, description="Earlier evidence master keys (base64, comma-separated), read until rotated away."
    )
    evidence_purge_cron: str = Field("41 3 * * *", description="When the worker purges expired evidence (cron).")
    evidence_store_url: str | None = Field(
        None, description="Keep evidence in an object store (fsspec URL, e.g. s3://bucket/prefix) instead of on disk."
    )
    evidence_store_options: SecretStr | None = Field(
        None, description="fsspec options of the object store as JSON (endpoint, credentials): kept secret."
    )

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}: use an IANA name such as Europe/London") from None
        return value

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+pysqlite:///{self.home / 'seawall.db'}"

    def ensure_home(self) -> Path:
        # Created private: it holds the database, the secret key, evidence. An existing folder is left as it is.
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self.home

    def effective_secret_key(self) -> str:
        """The configured secret, or one generated once and kept in SEAWALL_HOME."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self.ensure_home() / "secret.key"
        if not path.exists():
            _create_private_file(path, secrets.token_urlsafe(48))
        key = path.read_text().strip()
        if not key:
            raise RuntimeError(f"{path} is empty: remove it to have a new key made, or set SEAWALL_SECRET_KEY")
        return key

    def masked(self) -> dict[str, Any]:
        """Settings for display: secrets masked, and credentials in any URL (userinfo, ?password=…)."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "********" if value.get_secret_value() else ""
            elif isinstance(value, str) and "://" in value:
                value = redact_url(value)
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        out["effective_database_url"] = redact_url(self.effective_database_url)
        return out


def _create_private_file(path: Path, text: str) -> None:
    """Write ``path`` once, mode 0600 from its creation, atomically: a process that loses a race to
    create it reads the winner's file, never a partial one, and nobody's file is overwritten."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.link(temporary, path)  # fails if the name exists: the first writer wins
    except FileExistsError:
        pass
    finally:
        temporary.unlink(missing_ok=True)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests change the environment)."""
    get_settings.cache_clear()
