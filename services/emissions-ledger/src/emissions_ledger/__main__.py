"""`python -m emissions_ledger`: runs the service until SIGTERM or SIGINT."""

from emissions_ledger.bootstrap import build
from servicekit.runtime import run

if __name__ == "__main__":
    run(build)
