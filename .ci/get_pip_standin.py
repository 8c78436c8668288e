"""Offline stand-in for the get-pip bootstrap script that ansible-test downloads.

ansible-test runs it (as ~/.ansible/test/cache/get_pip_<ver>.py) inside a new
virtual environment to install pip. Here pip comes from the interpreter's own
ensurepip, then pip installs the requested packages from the configured index.
"""

import os
import subprocess
import sys

DROP = {"--no-setuptools", "--no-wheel"}


def main() -> None:
    env = dict(os.environ)
    # ensurepip points PIP_CONFIG_FILE at /dev/null, which would hide the
    # machine's pip configuration (index mirrors, certificates).
    env.pop("PIP_CONFIG_FILE", None)
    subprocess.run([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    args = [a for a in sys.argv[1:] if a not in DROP]
    subprocess.run([sys.executable, "-m", "pip", "install", *args], check=True, env=env)


if __name__ == "__main__":
    main()
