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
