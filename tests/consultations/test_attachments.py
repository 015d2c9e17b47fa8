"""PDF attachments to submissions: only real PDFs within the size limit are kept, stored by their SHA-256.

Whatever is refused leaves nothing behind: no file in the attachments folder (not even a temporary one), and
the submission, the audit log and every other row exactly as they were. A stored PDF is served to its own
organisation and to staff, and to no other partner.
"""

import hashlib
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pypdf import PdfWriter
from sqlalchemy.engine import Engine

from service.config import settings
from tests.consultations.state import (
    API,
    Consultations,
    audit_entries,
    changes,
    consultations_state,
    pdf_bytes,
)
from tests.factories import api_headers, make_partner, make_user

LIMIT = 4096  # bytes: the size limit the tests set (`attachment_max_mb` is 1/256 MB)
ONLY_PDF = "Only PDF files can be attached."


def png_bytes() -> bytes:
    """A real PNG image."""
    buffer = BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def padded(data: bytes, size: int) -> bytes:
    """A PDF grown to exactly `size` bytes with whitespace after its end (still a readable PDF)."""
    assert len(data) <= size
    return data + b"\n" * (size - len(data))


def no_page_pdf() -> bytes:
    """A well-formed PDF without a single page."""
    buffer = BytesIO()
    PdfWriter().write(buffer)
    return buffer.getvalue()


NOT_PDFS = {
    "plain text": ("становище.txt", "Подкрепяме мерките.\n".encode(), "text/plain"),
    "a PNG image": ("снимка.png", png_bytes(), "image/png"),
    "a PNG renamed .pdf": ("snimka.pdf", png_bytes(), "application/pdf"),
    "an HTML page renamed .pdf": (
        "report.pdf", b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>", "application/pdf",
    ),
    "a file that starts like a PDF": ("fake.pdf", b"%PDF-1.7\n<script>alert(1)</script>\n%%EOF\n", "application/pdf"),
    "a PDF behind another file's header": ("gif.pdf", b"GIF89a" + pdf_bytes(), "application/pdf"),
    "a PDF cut in half": ("half.pdf", pdf_bytes(3)[: len(pdf_bytes(3)) // 2], "application/pdf"),
    "a PDF with no page": ("empty.pdf", no_page_pdf(), "application/pdf"),
    "an empty file": ("nothing.pdf", b"", "application/pdf"),
}  # fmt: skip


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The attachments folder, the test's own, and a size limit of `LIMIT` bytes."""
    monkeypatch.setattr(settings, "attachments_dir", tmp_path / "attachments")
    monkeypatch.setattr(settings, "attachment_max_mb", LIMIT / (1024 * 1024))
    assert settings.effective_attachments_dir == tmp_path / "attachments"
    return tmp_path / "attachments"


@dataclass
class World:
    """An open consultation inviting orgs A and B, each with its submission (and no attachment yet)."""

    client: TestClient
    engine: Engine
    folder: Path
    cid: int
    sub_a: int
    sub_b: int
    a: dict[str, str]  # headers of org A's partner user, B's, a coordinator's, an admin's
    b: dict[str, str]
    staff: dict[str, str]
    admin: dict[str, str]

    def path(self, submission_id: int) -> str:
        return f"{API}/{self.cid}/submissions/{submission_id}/attachment"


@pytest.fixture
def world(client, session, engine, folder) -> World:
    coordinator = make_user(session, "coordinator")
    org_a, org_b = make_partner(session, name="Сдружение „Алфа“"), make_partner(session, name="„Бета“ ООД")
    rep_a = make_user(session, "partner", organisation=org_a)
    rep_b = make_user(session, "partner", organisation=org_b)
    build = Consultations(engine, coordinator)
    cid = build.make("open", [org_a.id, org_b.id])
    return World(
        client=client,
        engine=engine,
        folder=folder,
        cid=cid,
        sub_a=build.submit(cid, org_a.id, rep_a),
        sub_b=build.submit(cid, org_b.id, rep_b),
        a=api_headers(client, rep_a),
        b=api_headers(client, rep_b),
        staff=api_headers(client, coordinator),
        admin=api_headers(client, make_user(session, "admin")),
    )


def stored_files(folder: Path) -> list[Path]:
    """Every file below the attachments folder, temporary ones included."""
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def upload(w: World, headers: dict[str, str], sid: int, name: str, data: bytes, kind: str = "application/pdf") -> Any:
    return w.client.put(w.path(sid), files={"file": (name, data, kind)}, headers={**headers, "Accept-Language": "en"})


def file_error(response: Any) -> str | None:
    """The 422's message on the `file` field, or None."""
    detail = response.json().get("detail")
    if isinstance(detail, list):
        for item in detail:
            if tuple(item.get("loc", ())) == ("body", "file"):
                return item["msg"]
    return None


def test_files_that_are_not_pdfs_are_refused_and_nothing_is_stored(world):
    w = world
    problems = []
    for what, (name, data, kind) in NOT_PDFS.items():
        before = consultations_state(w.engine)
        response = upload(w, w.a, w.sub_a, name, data, kind)
        if response.status_code != 422 or file_error(response) != ONLY_PDF:
            problems.append(f"{what}: {response.status_code} {response.text[:200]}")
        if changed := changes(before, consultations_state(w.engine)):
            problems.append(f"{what}: refused, yet changed {changed[:2]}")
        if files := stored_files(w.folder):
            problems.append(f"{what}: left {files}")
    assert not problems, "\n".join(problems)
    assert w.client.get(w.path(w.sub_a), headers=w.a).status_code == 404  # still no attachment


def test_a_file_over_the_size_limit_is_refused_and_nothing_is_stored(world):
    w = world
    assert len(pdf_bytes(40)) > LIMIT
    for what, data in [
        ("a real PDF over the limit", pdf_bytes(40)),
        ("a real PDF one byte over", padded(pdf_bytes(), LIMIT + 1)),
        ("a big text file", b"A" * (LIMIT * 50)),
    ]:
        before = consultations_state(w.engine)
        response = upload(w, w.a, w.sub_a, "голям.pdf", data)
        assert response.status_code == 422, (what, response.text)
        assert file_error(response) == f"The file is larger than {LIMIT / 1024 / 1024:g} MB.", what
        assert changes(before, consultations_state(w.engine)) == [], what
        assert stored_files(w.folder) == [], what
    # Exactly at the limit is within it.
    at_limit = padded(pdf_bytes(), LIMIT)
    response = upload(w, w.a, w.sub_a, "точно.pdf", at_limit)
    assert response.status_code == 200, response.text
    assert response.json()["attachment_size"] == LIMIT


def test_a_real_pdf_is_stored_by_its_sha256_served_to_its_owner_and_staff_and_replaced_by_the_next(world):
    w = world
    first = pdf_bytes(2, title="Становище на Алфа")
    digest = hashlib.sha256(first).hexdigest()
    before = consultations_state(w.engine)
    response = upload(w, w.a, w.sub_a, "C:\\Users\\ivana\\..\\Становище: Алфа.PDF", first)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["attachment_sha256"], answer["attachment_size"]) == (digest, len(first))
    assert answer["attachment_name"] == "Становище Алфа.PDF"  # the folder and the unsafe characters dropped
    assert answer["revision"] == 1  # attaching is not a new revision of the position
    assert stored_files(w.folder) == [w.folder / digest[:2] / f"{digest}.pdf"]
    assert (w.folder / digest[:2] / f"{digest}.pdf").read_bytes() == first
    changed = changes(before, consultations_state(w.engine))
    assert [line.split(":")[0] for line in changed] == [f"Submission {w.sub_a}", "audit_rows", "audit_head"]

    for who, headers in [("owner", w.a), ("coordinator", w.staff), ("admin", w.admin)]:
        got = w.client.get(w.path(w.sub_a), headers=headers)
        assert got.status_code == 200, who
        assert got.content == first and got.headers["content-type"] == "application/pdf", who
        assert got.headers["cache-control"] == "private, no-store", who
    other = w.client.get(w.path(w.sub_a), headers=w.b)
    assert other.status_code == 404 and other.content != first
    assert w.client.get(w.path(w.sub_b), headers=w.b).status_code == 404  # B attached nothing

    second = pdf_bytes(1, title="Поправено становище")
    response = upload(w, w.a, w.sub_a, "../../../etc/passwd", second)
    assert response.status_code == 200, response.text
    new_digest = hashlib.sha256(second).hexdigest()
    assert response.json()["attachment_sha256"] == new_digest
    assert response.json()["attachment_name"] == "passwd.pdf"
    assert w.client.get(w.path(w.sub_a), headers=w.a).content == second
    assert w.client.get(w.path(w.sub_a), headers=w.staff).content == second
    # Content-addressed files are never changed: the earlier one stays, under its own name.
    assert stored_files(w.folder) == sorted(
        [w.folder / digest[:2] / f"{digest}.pdf", w.folder / new_digest[:2] / f"{new_digest}.pdf"]
    )
    attached = [e for e in audit_entries(w.engine, "submission.attach") if e.entity_id == w.sub_a]
    assert len(attached) == 2


def test_no_attachment_once_the_consultation_is_closed_nor_to_another_organisations_submission(world):
    w = world
    before = consultations_state(w.engine)
    foreign = upload(w, w.a, w.sub_b, "чуждо.pdf", pdf_bytes())
    assert foreign.status_code == 404
    missing = upload(w, w.a, 999_999, "чуждо.pdf", pdf_bytes())
    assert missing.status_code == 404 and missing.json() == foreign.json()
    anonymous = upload(w, {}, w.sub_a, "аноним.pdf", pdf_bytes())
    assert anonymous.status_code == 401
    # Who may attach is checked before what is attached: a stranger's oversized file is a 401 too.
    assert upload(w, {}, w.sub_a, "голям.pdf", pdf_bytes(40)).status_code == 401
    assert upload(w, w.a, w.sub_b, "голям.pdf", pdf_bytes(40)).status_code == 404
    staff = upload(w, w.staff, w.sub_a, "от-щаба.pdf", pdf_bytes())
    assert staff.status_code == 403  # the position and its attachment are the organisation's own
    no_file = w.client.put(w.path(w.sub_a), data={"name": "x"}, headers=w.a)
    assert no_file.status_code == 422 and any(d["loc"] == ["body", "file"] for d in no_file.json()["detail"])
    assert changes(before, consultations_state(w.engine)) == []
    assert stored_files(w.folder) == []

    assert w.client.post(f"{API}/{w.cid}/close", headers=w.staff).status_code == 200
    before = consultations_state(w.engine)
    late = upload(w, w.a, w.sub_a, "късно.pdf", pdf_bytes())
    assert late.status_code == 409, late.text
    assert late.json()["detail"] == "The consultation is closed: submissions are no longer accepted."
    assert changes(before, consultations_state(w.engine)) == []
    assert stored_files(w.folder) == []
