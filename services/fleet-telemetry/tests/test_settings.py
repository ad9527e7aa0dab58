import pytest

from fleet_telemetry.bootstrap import FleetSettings
from servicekit.settings import ConfigurationError, load_settings


def test_activity_window_defaults_to_a_quarter_hour() -> None:
    assert load_settings(FleetSettings).activity_window_minutes == 15


@pytest.mark.parametrize("minutes", ["5", "30", "60"])
def test_activity_window_may_be_any_divisor_of_an_hour(
    monkeypatch: pytest.MonkeyPatch, minutes: str
) -> None:
    monkeypatch.setenv("ACTIVITY_WINDOW_MINUTES", minutes)
    assert load_settings(FleetSettings).activity_window_minutes == int(minutes)


@pytest.mark.parametrize("minutes", ["7", "45", "0", "120", "quarter"])
def test_an_activity_window_that_does_not_divide_an_hour_stops_the_service(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], minutes: str
) -> None:
    monkeypatch.setenv("ACTIVITY_WINDOW_MINUTES", minutes)
    with pytest.raises(ConfigurationError):
        load_settings(FleetSettings)
    assert "ACTIVITY_WINDOW_MINUTES" in capsys.readouterr().err


def test_a_consumer_fetches_a_bounded_amount_ahead_by_default() -> None:
    settings = load_settings(FleetSettings)
    assert settings.consumer_partition_fetch_bytes == 4 * 1024 * 1024
    assert settings.consumer_fetch_bytes == 8 * 1024 * 1024


@pytest.mark.parametrize(
    ("partition_bytes", "fetch_bytes", "named"),
    [
        ("8388608", "4194304", "CONSUMER_FETCH_BYTES"),
        ("1024", "8388608", "CONSUMER_PARTITION_FETCH_BYTES"),
        ("1048576", "1000000000", "CONSUMER_FETCH_BYTES"),
    ],
)
def test_fetch_sizes_out_of_bounds_stop_the_service(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    partition_bytes: str,
    fetch_bytes: str,
    named: str,
) -> None:
    monkeypatch.setenv("CONSUMER_PARTITION_FETCH_BYTES", partition_bytes)
    monkeypatch.setenv("CONSUMER_FETCH_BYTES", fetch_bytes)
    with pytest.raises(ConfigurationError):
        load_settings(FleetSettings)
    assert named in capsys.readouterr().err
