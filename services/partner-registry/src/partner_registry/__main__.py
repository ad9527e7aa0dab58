"""`python -m partner_registry`: runs the service until SIGTERM or SIGINT."""

from servicekit.runtime import run

from partner_registry.bootstrap import build

if __name__ == "__main__":
    run(build)
