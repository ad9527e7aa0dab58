"""`python -m locker_hubs`: runs the service until SIGTERM or SIGINT."""

from servicekit.runtime import run

from locker_hubs.bootstrap import build

if __name__ == "__main__":
    run(build)
