"""`python -m locker_hubs`: runs the service until SIGTERM or SIGINT."""

from locker_hubs.bootstrap import build
from servicekit.runtime import run

if __name__ == "__main__":
    run(build)
