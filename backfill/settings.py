"""One typed settings object, read from the environment (and `.env`) at the entry point."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from backfill.errors import ConfigError

# Settings with no sensible default: each command asks for the ones it needs with `require`.
_REQUIRED_BY_NAME = {
    "source_database_url": "SOURCE_DATABASE_URL",
    "database_url": "DATABASE_URL",
    "celery_broker_url": "CELERY_BROKER_URL",
    "growpanel_api_key": "GROWPANEL_API_KEY",
    "growpanel_data_source_id": "GROWPANEL_DATA_SOURCE_ID",
}


def _parse_float_list(value: Any) -> Any:
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace(";", ",").split(",") if p.strip()]
        return [float(p) for p in parts]
    return value


def _parse_key_map(value: Any) -> Any:
    """`ds_a=key1,ds_b=key2` (or a JSON object) -> dict."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return {}
        if text.startswith("{"):
            import json

            return json.loads(text)
        out: dict[str, str] = {}
        for item in text.split(","):
            if not item.strip():
                continue
            ds, sep, key = item.partition("=")
            if not sep or not ds.strip() or not key.strip():
                raise ValueError("expected DATA_SOURCE=KEY pairs separated by commas")
            out[ds.strip()] = key.strip()
        return out
    return value


class Settings(BaseSettings):
    """Every setting of the importer; environment variable names are the upper-cased field names."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True)

    source_database_url: str | None = None
    database_url: str | None = None
    celery_broker_url: str | None = None
    growpanel_api_url: str = "https://api.growpanel.io"
    growpanel_api_key: SecretStr | None = None
    growpanel_data_source_id: str | None = None
    # Keys for further data sources, for workers serving runs of several data sources.
    growpanel_api_keys: Annotated[dict[str, SecretStr], NoDecode] = Field(default_factory=dict)
    batch_size: int = Field(500, ge=1, le=1000)

    # Shared across every worker of a run, through Redis.
    growpanel_max_rps: float | None = Field(None, gt=0)
    # Retries of transient failures (5xx, network errors, timeouts): one delay per retry.
    retry_backoff: Annotated[list[float], NoDecode] = Field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0, 16.0])
    retry_jitter: float = Field(0.2, ge=0, le=1)
    # Total time a batch may spend being rate limited or retried before the run pauses.
    batch_time_budget: float = Field(900.0, gt=0)
    # A Retry-After longer than this is waited out in the database, not in a broker countdown.
    max_countdown: float = Field(300.0, gt=0)
    http_timeout: float = Field(30.0, gt=0)
    http_connect_timeout: float = Field(10.0, gt=0)
    # A response body larger than this is not read further: the attempt is recorded as an error.
    max_response_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    # A Retry-After above this is waited this long instead (a hostile or broken server cannot park a batch).
    max_retry_after: float = Field(300.0, gt=0)
    # `verify --mrr`: the unit of GET /reports/mrr amounts (the spec does not say): detected, or fixed.
    # (Not VERIFY_...: a setting named "verify" would read as a TLS switch, and there is none.)
    mrr_report_unit: str = "auto"

    # Batches queued or being posted at once, per run: bounds the broker's memory.
    max_in_flight: int = Field(64, ge=1, le=10000)
    lease_seconds: float = Field(90.0, gt=0)
    sweep_interval: float = Field(15.0, gt=0)
    queue_timeout: float = Field(600.0, gt=0)
    # A batch whose worker died this many times is failed instead of re-queued.
    max_deliveries: int = Field(5, ge=1)
    producer_lease_seconds: float = Field(90.0, gt=0)

    alert_webhook_url: str | None = None

    # Where the guide and the SDK's OpenAPI models disagree, the payload names are configurable.
    invoice_amount_field: str = "amount_cents"
    plan_send_external_id: bool = False

    log_level: str = "INFO"

    _parse_backoff = field_validator("retry_backoff", mode="before")(_parse_float_list)
    _parse_keys = field_validator("growpanel_api_keys", mode="before")(_parse_key_map)

    @field_validator("invoice_amount_field")
    @classmethod
    def _amount_field(cls, value: str) -> str:
        if value not in {"amount_cents", "amount", "both"}:
            raise ValueError("must be amount_cents, amount or both")
        return value

    @field_validator("mrr_report_unit")
    @classmethod
    def _mrr_unit(cls, value: str) -> str:
        if value not in {"auto", "cents", "units"}:
            raise ValueError("must be auto, cents or units")
        return value

    @field_validator("retry_backoff")
    @classmethod
    def _backoff(cls, value: list[float]) -> list[float]:
        if any(v < 0 for v in value):
            raise ValueError("delays must be non-negative seconds")
        return value

    @field_validator("source_database_url", "database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in {"postgresql", "postgres", "postgresql+psycopg"}:
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("celery_broker_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("redis://", "rediss://", "redis+socket://")):
            raise ValueError("must be a redis:// URL")
        return value

    @field_validator("growpanel_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s):// URL")
        return value.rstrip("/")

    def require(self, *names: str) -> None:
        """Raise ConfigError naming the first of `names` that is not set."""
        for name in names:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if value is None or not str(value).strip():
                raise ConfigError(f"{_REQUIRED_BY_NAME.get(name, name.upper())} is not set")

    def secrets(self) -> list[str]:
        """Every API key this process holds: what `redact` must remove from anything kept or printed."""
        keys = [self.growpanel_api_key, *self.growpanel_api_keys.values()]
        return [k.get_secret_value() for k in keys if k is not None and k.get_secret_value()]

    def api_key_for(self, data_source: str) -> str | None:
        """The API key this process holds for `data_source`, if any."""
        if data_source == self.growpanel_data_source_id and self.growpanel_api_key is not None:
            return self.growpanel_api_key.get_secret_value()
        key = self.growpanel_api_keys.get(data_source)
        return key.get_secret_value() if key is not None else None


def load_settings(**overrides: Any) -> Settings:
    """Build Settings, turning validation errors into a one-line ConfigError naming the variable."""
    try:
        return Settings(**overrides)
    except SettingsError as exc:
        raise ConfigError(str(exc).replace('error parsing value for field "', "").split('"')[0].upper() + " is malformed") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "setting"
        msg = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{field.upper()} is malformed: {msg}") from None
