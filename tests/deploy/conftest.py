"""Fixtures of the deployment tests."""

import pytest

from bench.public import nginx_binary


@pytest.fixture
def nginx_installed() -> None:
    if nginx_binary() is None:
        pytest.skip(
            "nginx is not installed: `make test` installs it (.ci/system-deps.sh test), or apt-get install nginx"
        )
