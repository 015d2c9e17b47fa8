"""The safe PDF renderer: nothing is fetched from outside templates/, a runaway render is killed on time while others
carry on, and the PDF/A output keeps its attachments; real PDFs read back with pypdf, a real HTTP server."""

import http.server
import json
import logging
import os
import threading
import time
from io import BytesIO
from pathlib import Path

import pytest
from pypdf import PdfReader

from service import pdf
from service.memoranda import documents

HOSTNAME_FILE = Path("/etc/hostname")


def text_of(content: bytes) -> str:
    return " ".join(" ".join(page.extract_text() for page in PdfReader(BytesIO(content)).pages).split())


class CountingHandler(http.server.BaseHTTPRequestHandler):
    """Counts every request; /redirect answers with a redirect to a local file."""

    hits: list[str] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", f"file://{HOSTNAME_FILE}")
            self.end_headers()
            return
        body = b"body { color: red }" if self.path.endswith(".css") else b"GIF89a"
        self.send_response(200)
        self.send_header("Content-Type", "text/css" if self.path.endswith(".css") else "image/gif")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Quiet: the test counts the requests itself, it needs no access log on stderr."""


@pytest.fixture
def http_server():
    CountingHandler.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CountingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "secret.css"  # a served type, and still refused: it is not below templates/
    path.write_text("/* TOPSECRET-7731 */ body::after { content: 'TOPSECRET-7731' }")
    return path


def test_nothing_outside_templates_is_fetched(tmp_path, http_server, secret_file, caplog):
    base = f"http://127.0.0.1:{http_server.server_port}"
    (tmp_path / "logistics_support.bg.html").write_text(f"""<!DOCTYPE html>
<html><head>
<link rel="stylesheet" href="{base}/style.css">
<link rel="stylesheet" href="file://{secret_file}">
<link rel="attachment" href="file://{HOSTNAME_FILE}" title="leak">
<style>
  @import url("{base}/import.css");
  @font-face {{ font-family: Leak; src: url("{base}/font.ttf"); }}
  body {{ background: url("{base}/background.gif"); font-family: Leak, "DejaVu Serif"; }}
  p::before {{ content: url("file://{HOSTNAME_FILE}"); }}
</style>
</head><body>
<p>Пробен текст: {{{{ value }}}}</p>
<img src="file://{HOSTNAME_FILE}">
<img src="memoranda/../../../../../../../..{HOSTNAME_FILE}">
<img src="{base}/image.gif">
<img src="{base}/redirect">
<img src="https://127.0.0.1:{http_server.server_port}/tls.gif">
<img src="ftp://127.0.0.1:{http_server.server_port}/file.gif">
<img src="file://localhost{secret_file}">
<img src="file://example.org/etc/passwd">
<a rel="attachment" href="{base}/attachment.bin">приложение</a>
<svg width="10" height="10"><image href="{base}/in-svg.gif" width="10" height="10"/></svg>
</body></html>""")
    value = f'<img src="file://{HOSTNAME_FILE}"> {base}/from-a-value.gif url(file://{HOSTNAME_FILE})'

    with caplog.at_level(logging.WARNING, logger="service.pdf"):
        content = documents.render_pdf(
            "logistics_support", "bg", context={"value": value}, variables_json=b"{}", template_dir=tmp_path
        )

    assert CountingHandler.hits == []
    text = text_of(content)
    assert "Пробен текст:" in text
    assert "TOPSECRET-7731" not in text
    hostname = HOSTNAME_FILE.read_text().strip()
    assert hostname not in text.replace("hostname", "")
    assert list(PdfReader(BytesIO(content)).attachments) == ["variables.json"]
    refused = [record.getMessage() for record in caplog.records if record.name == "service.pdf"]
    assert any(f"Refused to load {base}/style.css" in message for message in refused)
    assert any(f"Refused to load file://{HOSTNAME_FILE}" in message for message in refused)
    assert any(f"Refused to load file://{secret_file}" in message for message in refused)


def test_the_fetcher_serves_only_files_below_its_root(tmp_path):
    root = tmp_path / "templates"
    (root / "memoranda").mkdir(parents=True)
    (root / "memoranda" / "style.css").write_text("p { color: blue }")
    (root / "memoranda" / "notes.toml").write_text("secret = 1")
    outside = tmp_path / "outside.css"
    outside.write_text("p { color: red }")
    (root / "memoranda" / "link.css").symlink_to(outside)
    (root / "memoranda" / "hostname.css").symlink_to(HOSTNAME_FILE)
    fetcher = pdf.template_fetcher(root)

    served = fetcher.fetch(f"file://{root}/memoranda/style.css")
    assert served.read() == b"p { color: blue }"
    assert served.content_type == "text/css"
    data = fetcher.fetch("data:image/svg+xml;base64,PHN2Zy8+")
    assert data.read() == b"<svg/>" and data.content_type == "image/svg+xml"

    for url in (
        f"file://{root}/memoranda/link.css",  # a symlink out of the root
        f"file://{root}/memoranda/hostname.css",
        f"file://{root}/memoranda/../../outside.css",  # a .. escape
        f"file://{root}/memoranda/%2e%2e/%2e%2e/outside.css",
        f"file://{root}/memoranda/notes.toml",  # below the root, but not a resource type
        f"file://{root}/memoranda/missing.css",
        f"file://{HOSTNAME_FILE}",
        f"file://example.org{root}/memoranda/style.css",
        "http://127.0.0.1:9/style.css",
        "https://example.org/style.css",
        "ftp://example.org/style.css",
        "javascript:alert(1)",
    ):
        with pytest.raises(pdf.URLRefused):
            fetcher.fetch(url)


def test_a_runaway_template_is_stopped_while_other_renders_go_on(tmp_path):
    (tmp_path / "logistics_support.bg.html").write_text(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}never"
    )
    pdf.warm_up()
    outcome: dict[str, object] = {}

    def runaway() -> None:
        started = time.monotonic()
        try:
            documents.render_pdf(
                "logistics_support", "bg", context={}, variables_json=b"{}", template_dir=tmp_path, timeout_seconds=3
            )
        except pdf.RenderTimeout as error:
            outcome["error"] = error
        outcome["seconds"] = time.monotonic() - started
        outcome["ended"] = time.monotonic()

    thread = threading.Thread(target=runaway)
    thread.start()
    time.sleep(0.2)
    kind, language = "public_consultation", "en"
    variables = documents.variables_json(documents.sample_variables(kind, language))
    normal = documents.render_pdf(
        kind, language, context=documents.sample_context(kind, language), variables_json=variables
    )
    normal_done = time.monotonic()
    thread.join(30)

    assert isinstance(outcome.get("error"), pdf.RenderTimeout)
    assert outcome["error"].status_code == 422
    assert "longer than 3 s" in outcome["error"].text()
    assert 3 <= outcome["seconds"] < 8
    assert normal_done < outcome["ended"]  # the normal document did not wait for the runaway one
    assert documents.SAMPLE_CODE in text_of(normal)
    # The killed worker was replaced: the next render works.
    again = documents.render_pdf(
        kind, language, context=documents.sample_context(kind, language), variables_json=variables
    )
    assert documents.SAMPLE_CODE in text_of(again)


def test_the_sandbox_refuses_one_huge_range_outright(tmp_path):
    # So a runaway template nests ranges (above); a single range(10**9) never starts.
    (tmp_path / "logistics_support.bg.html").write_text("{% for i in range(10**9) %}x{% endfor %}")
    with pytest.raises(pdf.RenderFailed, match="OverflowError"):
        documents.render_html("logistics_support", "bg", context={}, template_dir=tmp_path, timeout_seconds=5)


def test_a_broken_template_fails_clearly(tmp_path):
    (tmp_path / "logistics_support.bg.html").write_text("{% for x in %}")
    with pytest.raises(pdf.RenderFailed, match="TemplateSyntaxError"):
        documents.render_html("logistics_support", "bg", context={}, template_dir=tmp_path)


def test_the_sandbox_refuses_unsafe_attribute_access(tmp_path):
    (tmp_path / "logistics_support.bg.html").write_text("{{ value.__class__.__mro__ }}")
    with pytest.raises(pdf.RenderFailed, match=r"SecurityError|UndefinedError|unsafe"):
        documents.render_html("logistics_support", "bg", context={"value": "x"}, template_dir=tmp_path)


def test_render_pdf_embeds_attachments_as_pdf_a_3():
    data = json.dumps({"число": 42}, ensure_ascii=False).encode()
    attachment = pdf.Attachment("variables.json", data, "Filled variables", "application/json")

    content = pdf.render_pdf("<p style=\"font-family: 'DejaVu Sans'\">Здравей</p>", attachments=[attachment])

    reader = PdfReader(BytesIO(content))
    assert "Здравей" in reader.pages[0].extract_text()
    assert json.loads(reader.attachments["variables.json"][0]) == {"число": 42}
    xmp = reader.trailer["/Root"]["/Metadata"].get_object().get_data().decode()
    assert 'pdfaid:part="3"' in xmp and 'pdfaid:conformance="B"' in xmp
    (filespec,) = reader.trailer["/Root"]["/AF"]
    assert filespec.get_object()["/EF"]["/F"].get_object()["/Subtype"] == "/application/json"


def test_render_pdf_without_a_variant():
    content = pdf.render_pdf("<p>plain</p>", pdf_variant=None)
    reader = PdfReader(BytesIO(content))
    assert "/Metadata" not in reader.trailer["/Root"]
    assert "plain" in reader.pages[0].extract_text()


def test_merge_pdfs_appends_pages_and_keeps_the_first_ones_attachments():
    first = pdf.render_pdf(
        '<p>перва</p><p style="break-before: page">втора</p>',
        attachments=[pdf.Attachment("variables.json", b"{}", media_type="application/json")],
    )
    second = pdf.render_pdf("<p>сертификат</p>")

    merged = PdfReader(BytesIO(pdf.merge_pdfs(first, second)))

    assert [page.extract_text().strip() for page in merged.pages] == ["перва", "втора", "сертификат"]
    assert list(merged.attachments) == ["variables.json"]
    assert "/Metadata" in merged.trailer["/Root"]


def test_render_errors_surface_and_the_worker_survives():
    with pytest.raises(pdf.RenderFailed, match="ZeroDivisionError"):
        pdf.run_isolated(divmod, 1, 0)
    assert pdf.run_isolated(os.getpid) != os.getpid()  # it runs elsewhere, and still runs
