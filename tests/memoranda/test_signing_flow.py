"""Signing through the API up to the final PDF: the certificate page of every signature, the PAdES seal when a
signing certificate is configured (checked with pyHanko against the test root), and scanned wet-ink copies.
"""

import hashlib
import re
from io import BytesIO

import pytest
from pypdf import PdfReader, PdfWriter

from service.config import settings
from service.memoranda import archive, signing
from tests.memoranda.pki import KEY_PASSWORD, SIGNER_NAME, SigningPki, write_pki
from tests.memoranda.world import World, make_world

IVANA, JOHN, MAYOR = "Ивана Петрова", "John Smith", "Стефан Стефанов"


@pytest.fixture
def world(client, session, engine) -> World:
    return make_world(client, session, engine)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SigningPki:
    return write_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def no_certificate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "signing_cert_path", None)
    monkeypatch.setattr(settings, "signing_key_path", None)


@pytest.fixture
def certificate(monkeypatch: pytest.MonkeyPatch, pki: SigningPki) -> SigningPki:
    """The test signer configured as the settings name it (the identity is loaded once per set of files)."""
    monkeypatch.setattr(settings, "signing_key_path", pki.key_path)
    monkeypatch.setattr(settings, "signing_cert_path", pki.cert_path)
    monkeypatch.setattr(settings, "signing_chain_path", pki.chain_path)
    monkeypatch.setattr(settings, "signing_key_password", KEY_PASSWORD)
    return pki


def scanned_copy() -> bytes:
    """A one-page PDF, as a scanner would make of the signed paper."""
    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    writer.add_metadata({"/Title": "Сканирано копие"})
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def page_texts(pdf: bytes) -> list[str]:
    return [" ".join(page.extract_text().split()) for page in PdfReader(BytesIO(pdf)).pages]


def sign(w: World, memorandum_id: int, who: str, name: str) -> dict:
    response = w.call(
        "POST", f"/memoranda/{memorandum_id}/signatures", who, {"signer_name": name, "signer_title": "Управител"}
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_the_last_signature_puts_it_in_force_with_a_certificate_page(world, no_certificate):
    w = world
    memorandum_id = w.build.issued([w.org_a, w.org_b], render=True)
    issued = w.call("GET", f"/memoranda/{memorandum_id}/pdf", "coordinator").content
    path = f"/api/v1/memoranda/{memorandum_id}/signatures/scan"
    form = {"signer_name": JOHN, "signer_title": "Manager", "organisation_id": str(w.org_b.id)}
    staff = w.headers("coordinator")

    assert sign(w, memorandum_id, "partner A", IVANA)["status"] == "partially_signed"
    not_a_pdf = w.client.post(
        path, data=form, files={"scan": ("scan.jpg", b"\xff\xd8\xff\xe0JFIF", "image/jpeg")}, headers=staff
    )
    assert not_a_pdf.status_code == 422 and not_a_pdf.json()["detail"][0]["loc"] == ["body", "scan"]
    scan = scanned_copy()
    scanned = w.client.post(path, data=form, files={"scan": ("scan.pdf", scan, "application/pdf")}, headers=staff)
    assert scanned.status_code == 200, scanned.text
    party_b = scanned.json()["parties"][1]
    assert (party_b["method"], party_b["signer_name"], party_b["status"]) == ("upload", JOHN, "signed")
    assert party_b["scan_sha256"] == hashlib.sha256(scan).hexdigest()
    assert archive.load(party_b["scan_sha256"]) == scan  # kept in the archive by its hash
    assert scanned.json()["status"] == "partially_signed" and scanned.json()["signed_sha256"] is None

    final = sign(w, memorandum_id, "coordinator", MAYOR)

    assert final["status"] == "active" and final["activated_at"]
    assert final["sha256"] == hashlib.sha256(issued).hexdigest()
    signed = w.call("GET", f"/memoranda/{memorandum_id}/pdf", "partner A")  # the signed one, once there is one
    assert signed.status_code == 200
    assert hashlib.sha256(signed.content).hexdigest() == final["signed_sha256"]
    assert archive.load(final["signed_sha256"]) == signed.content
    assert w.call("GET", f"/memoranda/{memorandum_id}/pdf?variant=issued", "partner B").content == issued
    assert "-signed.pdf" in signed.headers["content-disposition"]

    issued_pages, signed_pages = page_texts(issued), page_texts(signed.content)
    assert signed_pages[:-1] == issued_pages  # the issued document, unchanged, then one page more
    certificate = signed_pages[-1]
    for party, signer in [(w.org_a.name, IVANA), (w.org_b.name, JOHN), (None, MAYOR)]:
        assert signer in certificate
        if party:
            assert " ".join(party.split()) in certificate
    assert final["verification_code"] in certificate
    compact = re.sub(r"\s", "", certificate)
    assert final["sha256"] in compact  # the issued document's hash (wrapped across lines)
    assert party_b["scan_sha256"] in compact
    assert not signing.validate_pdf(signed.content, trust_roots=[]).signed  # no certificate configured: no seal


def flip_byte(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]


def inside_longest_stream(pdf: bytes) -> int:
    """An offset in the middle of the largest stream's data (an embedded font), far from any PDF syntax."""
    spans = [(m.end(), pdf.index(b"endstream", m.end())) for m in re.finditer(rb"(?<!end)stream\r?\n", pdf)]
    start, end = max(spans, key=lambda span: span[1] - span[0])
    return (start + end) // 2


def test_with_a_certificate_configured_the_final_pdf_carries_a_valid_pades_signature(world, certificate):
    w = world
    memorandum_id = w.build.issued([w.org_a], render=True)
    sign(w, memorandum_id, "partner A", IVANA)

    final = sign(w, memorandum_id, "coordinator", MAYOR)

    assert final["status"] == "active" and final["signed_sha256"]
    signed = w.call("GET", f"/memoranda/{memorandum_id}/pdf", "partner A").content
    assert hashlib.sha256(signed).hexdigest() == final["signed_sha256"]
    check = signing.validate_pdf(signed, trust_roots=[certificate.root])
    assert (check.signed, check.intact, check.trusted) == (True, True, True), check.message
    assert check.signer_name == SIGNER_NAME
    assert IVANA in page_texts(signed)[-1]

    # One byte changed inside the signed range (in the middle of an embedded font's data): no longer intact.
    offset = inside_longest_stream(signed)
    start, length, rest, rest_length = map(
        int, re.search(rb"/ByteRange\s*\[\s*(\d+) (\d+) (\d+) (\d+)", signed).groups()
    )
    assert start <= offset < start + length or rest <= offset < rest + rest_length
    tampered = signing.validate_pdf(flip_byte(signed, offset), trust_roots=[certificate.root])
    assert tampered.signed and not tampered.intact and not tampered.valid
    assert "changed" in tampered.message
