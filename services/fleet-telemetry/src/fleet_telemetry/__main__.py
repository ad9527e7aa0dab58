"""`python -m fleet_telemetry`: runs the service until SIGTERM or SIGINT."""

from fleet_telemetry.bootstrap import build
from servicekit.runtime import run

if __name__ == "__main__":
    run(build)
