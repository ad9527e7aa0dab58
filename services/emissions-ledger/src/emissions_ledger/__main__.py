"""`python -m emissions_ledger`: runs the service until SIGTERM or SIGINT."""

from servicekit.runtime import run

from emissions_ledger.bootstrap import build

if __name__ == "__main__":
    run(build)
