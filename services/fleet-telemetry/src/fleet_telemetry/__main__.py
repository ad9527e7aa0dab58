"""`python -m fleet_telemetry`: runs the service until SIGTERM or SIGINT."""

from servicekit.runtime import run

from fleet_telemetry.bootstrap import build

if __name__ == "__main__":
    run(build)
