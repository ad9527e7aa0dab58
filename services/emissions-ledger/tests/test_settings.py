"""The ledger's settings for hourly electricity, validated when the service starts."""

import pytest

from emissions_ledger.bootstrap import LedgerSettings, hourly_municipalities
from servicekit.settings import ConfigurationError, load_settings


def test_hourly_pricing_is_off_and_the_source_not_asked_by_default() -> None:
    settings = load_settings(LedgerSettings)
    assert not settings.energi_data_service_enabled
    assert hourly_municipalities(settings.hourly_electricity_municipalities) == frozenset()
    assert settings.energi_data_service_url == "https://api.energidataservice.dk"
    assert settings.energi_data_service_price_area == "DK1"
    # The service's published limit: one request per dataset per minute.
    assert settings.energi_data_service_min_request_interval_s == 60.0


def test_municipalities_priced_by_the_hour_are_listed_or_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENERGI_DATA_SERVICE_ENABLED", "true")
    monkeypatch.setenv("HOURLY_ELECTRICITY_MUNICIPALITIES", " aalborg-kommune, aarhus-kommune ")
    settings = load_settings(LedgerSettings)
    assert hourly_municipalities(settings.hourly_electricity_municipalities) == {
        "aalborg-kommune",
        "aarhus-kommune",
    }
    monkeypatch.setenv("HOURLY_ELECTRICITY_MUNICIPALITIES", "*")
    assert load_settings(LedgerSettings).hourly_electricity_municipalities == "*"


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        (
            {"HOURLY_ELECTRICITY_MUNICIPALITIES": "aalborg-kommune"},
            "HOURLY_ELECTRICITY_MUNICIPALITIES",
        ),
        (
            {
                "ENERGI_DATA_SERVICE_ENABLED": "true",
                "HOURLY_ELECTRICITY_MUNICIPALITIES": "*,aalborg-kommune",
            },
            "HOURLY_ELECTRICITY_MUNICIPALITIES",
        ),
        ({"ENERGI_DATA_SERVICE_URL": "http://api.energidataservice.dk"}, "ENERGI_DATA_SERVICE_URL"),
        ({"ENERGI_DATA_SERVICE_URL": "ftp://127.0.0.1/"}, "ENERGI_DATA_SERVICE_URL"),
        ({"ENERGI_DATA_SERVICE_PRICE_AREA": "DK3"}, "ENERGI_DATA_SERVICE_PRICE_AREA"),
        ({"ENERGI_DATA_SERVICE_TIMEOUT_S": "0"}, "ENERGI_DATA_SERVICE_TIMEOUT_S"),
        (
            {"ENERGI_DATA_SERVICE_BACKOFF_S": "10", "ENERGI_DATA_SERVICE_BACKOFF_MAX_S": "5"},
            "ENERGI_DATA_SERVICE_BACKOFF_MAX_S",
        ),
        ({"ENERGI_DATA_SERVICE_PAGE_SIZE": "5"}, "ENERGI_DATA_SERVICE_PAGE_SIZE"),
    ],
)
def test_a_setting_that_cannot_work_stops_the_service(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variables: dict[str, str],
    named: str,
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError):
        load_settings(LedgerSettings)
    assert named in capsys.readouterr().err


def test_plain_http_is_for_this_machine_or_development(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENERGI_DATA_SERVICE_URL", "http://127.0.0.1:8765")
    assert load_settings(LedgerSettings).energi_data_service_url == "http://127.0.0.1:8765"
    monkeypatch.setenv("ENERGI_DATA_SERVICE_URL", "http://eds.internal:8080")
    monkeypatch.setenv("DEVELOPMENT_MODE", "true")
    assert load_settings(LedgerSettings).energi_data_service_url == "http://eds.internal:8080"
