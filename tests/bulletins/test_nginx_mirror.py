"""The README's nginx configuration (`bench/nginx-public.conf`, which `bench/public.py` runs too) in front of
a real `accord serve`: nginx serves the public URLs from the static mirror the app writes, passes the rest
to the app, and once the app is stopped goes on serving the public site, the very same bytes.
"""

import re
import time

import httpx
import pytest

from bench.public import NGINX_SITE, nginx, nginx_binary, site_config
from tests.bulletins.build import Officers
from tests.conftest import PROJECT, free_port, start_server, stop
from tests.test_browser import in_database

pytestmark = pytest.mark.slow

IDENTITY = {"Accept-Encoding": "identity"}
NGINX_ETAG = re.compile(r'"[0-9a-f]+-[0-9a-f]+"')  # nginx's own (mtime-size): the answer came from a file


def test_the_readme_shows_the_configuration_that_is_tested() -> None:
    assert NGINX_SITE.read_text().strip() in (PROJECT / "README.md").read_text()


@pytest.fixture
def nginx_installed() -> None:
    if nginx_binary() is None:
        pytest.skip(
            "nginx is not installed: `make test` installs it (.ci/system-deps.sh test), or apt-get install nginx"
        )


def public_paths(update_id: int) -> list[str]:
    return [
        "/", "/?lang=en", "/?lang=bg", f"/updates/{update_id}", f"/updates/{update_id}?lang=en",
        f"/updates/{update_id}/cap.xml", "/fact-checks", "/fact-checks?lang=en", "/feeds/updates.atom",
        "/feeds/cap.atom", "/api/v1/public/updates", "/static/css/public.css",
    ]  # fmt: skip


def media_type(response: httpx.Response) -> str:
    return response.headers["content-type"].split(";")[0]


def test_the_public_site_is_served_from_the_mirror_and_outlives_the_app(
    nginx_installed, database_url, public_mirror, tmp_path
) -> None:
    server = start_server(database_url)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as app:
            officers: Officers = in_database(database_url, lambda session: Officers(app, session))
            update = officers.published()
            officers.published(language="en", title="Water at the town hall", body="From **10 am** to 6 pm.")
            officers.correct(update["id"], "Мостът е **затворен** до 18:00 ч.", reason="Уточнен е срокът.")
            officers.fact_check()

            port = free_port()
            site = site_config(listen=f"127.0.0.1:{port}", mirror_dir=public_mirror, app=server.url.split("//")[1])
            with nginx(tmp_path / "nginx", [site], [port]), httpx.Client(base_url=f"http://127.0.0.1:{port}") as proxy:
                # An update published while nginx serves the mirror shows there within its file cache's second.
                late = officers.published(title="Пункт за пясъчни чували в кв. „Мошино“")
                deadline = time.monotonic() + 10
                while late["title"] not in proxy.get("/").text and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert late["title"] in proxy.get("/").text
                paths = [*public_paths(update["id"]), f"/updates/{late['id']}"]
                direct = {path: app.get(path, headers=IDENTITY) for path in paths}
                assert all(response.status_code == 200 for response in direct.values())

                # The public URLs come from the mirror's files: the same bytes as the app's answers, with their
                # own media types and the app's caching; a conditional request gets 304.
                for path, expected in direct.items():
                    response = proxy.get(path, headers=IDENTITY)
                    assert response.status_code == 200, path
                    assert response.content == expected.content, f"{path}: the mirror differs from the app"
                    assert media_type(response) == media_type(expected), path
                    assert NGINX_ETAG.fullmatch(response.headers["etag"]), (path, response.headers["etag"])
                    assert "max-age=30" in response.headers["cache-control"] and "last-modified" in response.headers
                assert media_type(proxy.get(f"/updates/{update['id']}/cap.xml")) == "application/cap+xml"
                assert media_type(proxy.get("/feeds/updates.atom")) == "application/atom+xml"
                etag = proxy.get("/").headers["etag"]
                assert proxy.get("/", headers={"If-None-Match": etag}).status_code == 304
                assert "Content-Encoding" not in proxy.get("/", headers=IDENTITY).headers
                assert proxy.get("/", headers={"Accept-Encoding": "gzip"}).headers["content-encoding"] == "gzip"

                # What the mirror has no file for goes to the app: a query, a staff page, an update it lacks.
                filtered = proxy.get("/api/v1/public/updates?language=en")
                assert filtered.status_code == 200 and filtered.json()["total"] == 1
                assert not NGINX_ETAG.fullmatch(filtered.headers["etag"])
                assert proxy.get("/healthz").text == "ok"
                login = proxy.get("/login")
                assert login.status_code == 200 and 'name="password"' in login.text
                assert proxy.get("/updates/999999").status_code == 404

                # The app stops. The public site is still there, unchanged.
                stop(server.proc)
                with pytest.raises(httpx.ConnectError):
                    httpx.get(server.url + "/healthz")
                for path, expected in direct.items():
                    response = proxy.get(path, headers=IDENTITY)
                    assert response.status_code == 200, path
                    assert response.content == expected.content, f"{path}: changed once the app stopped"

                # Anything else finds the verified updates instead, with the error's status, never cached.
                for path in ("/login", "/api/v1/public/updates?language=en", "/updates/999999"):
                    down = proxy.get(path, headers=IDENTITY)
                    assert down.status_code == 502, path
                    assert down.content == direct["/"].content, path
                    assert down.headers["cache-control"] == "no-store" and down.headers["retry-after"] == "30"
    finally:
        stop(server.proc)
