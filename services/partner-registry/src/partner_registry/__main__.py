"""`python -m partner_registry`: runs the service until SIGTERM or SIGINT."""

from partner_registry.bootstrap import build
from servicekit.runtime import run

if __name__ == "__main__":
    run(build)
