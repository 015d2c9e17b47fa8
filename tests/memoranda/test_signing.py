"""PAdES signing of real WeasyPrint PDF/A-3b documents, checked with pyHanko against a generated test CA."""

import re
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path

import pypdf
import pytest
import weasyprint
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader

from service.config import settings
from service.memoranda.archive import sha256_hex
from service.memoranda.signing import (
    SigningConfigError,
    SigningIdentity,
    configured_identity,
    sign_pdf,
    validate_pdf,
)
from tests.memoranda.pki import KEY_PASSWORD, SIGNER_NAME, SigningPki, make_root, pem, write_pki

MEMORANDUM_HTML = """<!doctype html>
<html lang="bg"><head><meta charset="utf-8"><title>Меморандум</title>
<style>body { font-family: "DejaVu Sans", sans-serif; }</style></head>
<body><h1>Меморандум за сътрудничество</h1>
<p>Община Примерно и Сдружение „Помощ“ се договарят за логистична подкрепа при бедствия.</p></body></html>"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SigningPki:
    return write_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def identity(pki: SigningPki) -> SigningIdentity:
    return SigningIdentity.from_files(
        key_path=pki.key_path, cert_path=pki.cert_path, chain_path=pki.chain_path, key_password=KEY_PASSWORD
    )


@pytest.fixture(scope="module")
def memorandum_pdf() -> bytes:
    return weasyprint.HTML(string=MEMORANDUM_HTML).write_pdf(pdf_variant="pdf/a-3b")


@pytest.fixture(scope="module")
def signed_pdf(memorandum_pdf: bytes, identity: SigningIdentity) -> bytes:
    return sign_pdf(memorandum_pdf, identity=identity, reason="Подписан от всички страни", location="гр. Примерно")


def flip_byte(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]


def inside_longest_stream(pdf: bytes) -> int:
    """An offset in the middle of the largest stream's data (the embedded font), far from any PDF syntax."""
    spans = [(m.end(), pdf.index(b"endstream", m.end())) for m in re.finditer(rb"(?<!end)stream\r?\n", pdf)]
    start, end = max(spans, key=lambda span: span[1] - span[0])
    return (start + end) // 2


def test_signature_validates_against_its_root(signed_pdf: bytes, pki: SigningPki) -> None:
    check = validate_pdf(signed_pdf, trust_roots=[pki.root])

    assert (check.signed, check.intact, check.trusted, check.valid) == (True, True, True, True), check.message
    assert check.signer_name == SIGNER_NAME
    assert check.signed_at is not None
    assert abs(datetime.now(UTC) - check.signed_at) < timedelta(minutes=5)


def test_signature_is_a_pades_incremental_update(signed_pdf: bytes, memorandum_pdf: bytes) -> None:
    assert signed_pdf.startswith(memorandum_pdf)
    assert len(signed_pdf) > len(memorandum_pdf)

    [signature] = PdfFileReader(BytesIO(signed_pdf)).embedded_signatures
    assert signature.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
    assert signature.sig_object["/Reason"] == "Подписан от всички страни"
    assert signature.sig_object["/Location"] == "гр. Примерно"
    assert signature.sig_object["/Name"] == SIGNER_NAME


def test_signed_pdf_still_reads_with_pypdf_as_pdf_a(signed_pdf: bytes) -> None:
    reader = pypdf.PdfReader(BytesIO(signed_pdf), strict=True)

    text = " ".join(reader.pages[0].extract_text().split())
    assert "Меморандум за сътрудничество" in text
    assert "Сдружение „Помощ“ се договарят за логистична подкрепа" in text
    xmp = reader.trailer["/Root"]["/Metadata"].get_object().get_data().decode()
    assert 'pdfaid:part="3"' in xmp
    assert 'pdfaid:conformance="B"' in xmp
    # PDF/A requires the Info dictionary and the XMP packet to name the same producer.
    assert reader.metadata.producer == reader.xmp_metadata.pdf_producer


@pytest.mark.parametrize("where", ["binary header comment", "embedded font data"])
def test_a_changed_byte_in_the_signed_range_is_not_intact(
    signed_pdf: bytes, memorandum_pdf: bytes, pki: SigningPki, where: str
) -> None:
    offset = 10 if where == "binary header comment" else inside_longest_stream(memorandum_pdf)
    assert offset < len(memorandum_pdf)

    check = validate_pdf(flip_byte(signed_pdf, offset), trust_roots=[pki.root])

    assert check.signed
    assert not check.intact
    assert not check.valid
    assert "changed" in check.message


def test_an_update_appended_after_signing_is_not_intact(signed_pdf: bytes, pki: SigningPki) -> None:
    writer = IncrementalPdfFileWriter(BytesIO(signed_pdf))
    writer.root["/Lang"] = generic.TextStringObject("en")
    writer.update_root()
    out = BytesIO()
    writer.write(out)

    check = validate_pdf(out.getvalue(), trust_roots=[pki.root])

    assert check.signed
    assert not check.intact
    assert "after its last signature" in check.message


def test_an_unrelated_root_does_not_trust_the_signature(signed_pdf: bytes) -> None:
    other_root, _ = make_root("Some Other Root")

    check = validate_pdf(signed_pdf, trust_roots=[other_root])

    assert (check.signed, check.intact, check.trusted) == (True, True, False)
    assert check.signer_name == SIGNER_NAME
    assert "trusted root" in check.message


def test_an_unsigned_pdf_is_not_signed(memorandum_pdf: bytes, pki: SigningPki) -> None:
    check = validate_pdf(memorandum_pdf, trust_roots=[pki.root])

    assert (check.signed, check.intact, check.trusted) == (False, False, False)
    assert check.signer_name is None
    assert "no digital signature" in check.message


def test_a_file_that_is_not_a_pdf_is_not_signed(pki: SigningPki) -> None:
    check = validate_pdf(b"%PDF-1.7\nnot really\n", trust_roots=[pki.root])

    assert not check.signed
    assert "cannot be read as a PDF" in check.message


def test_no_configured_certificate_means_no_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "signing_cert_path", None)
    monkeypatch.setattr(settings, "signing_key_path", None)

    assert configured_identity() is None


def test_configured_identity_loads_the_named_files(
    monkeypatch: pytest.MonkeyPatch, pki: SigningPki, memorandum_pdf: bytes
) -> None:
    monkeypatch.setattr(settings, "signing_key_path", pki.key_path)
    monkeypatch.setattr(settings, "signing_cert_path", pki.cert_path)
    monkeypatch.setattr(settings, "signing_chain_path", pki.chain_path)
    monkeypatch.setattr(settings, "signing_key_password", KEY_PASSWORD)

    identity = configured_identity()

    assert identity is not None
    assert identity.name == SIGNER_NAME
    assert identity.certificate.dump() == pki.signer.public_bytes(Encoding.DER)
    assert len(identity.chain) == 1
    assert configured_identity() is identity  # loaded once


def test_a_certificate_without_a_key_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch, pki: SigningPki) -> None:
    monkeypatch.setattr(settings, "signing_cert_path", pki.cert_path)
    monkeypatch.setattr(settings, "signing_key_path", None)

    with pytest.raises(SigningConfigError, match="ACCORD_SIGNING_KEY_PATH"):
        configured_identity()


def test_a_wrong_key_password_is_a_configuration_error(pki: SigningPki) -> None:
    with pytest.raises(SigningConfigError, match="ACCORD_SIGNING_KEY_PASSWORD"):
        SigningIdentity.from_files(key_path=pki.key_path, cert_path=pki.cert_path, key_password="wrong")


def test_a_key_that_does_not_match_the_certificate_is_refused(pki: SigningPki, tmp_path: Path) -> None:
    other_root, _ = make_root("Some Other Root")
    other_cert = tmp_path / "other.pem"
    other_cert.write_bytes(pem(other_root))

    with pytest.raises(SigningConfigError, match="does not belong to the certificate"):
        SigningIdentity.from_files(key_path=pki.key_path, cert_path=other_cert, key_password=KEY_PASSWORD)


def test_sha256_hex() -> None:
    assert sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_signing_a_signed_pdf_adds_a_second_signature(signed_pdf: bytes, identity: SigningIdentity) -> None:
    countersigned = sign_pdf(signed_pdf, identity=identity, reason="Заверено", location="гр. Примерно")

    fields = [s.field_name for s in PdfFileReader(BytesIO(countersigned)).embedded_signatures]
    assert fields == ["Signature1", "Signature2"]
    check = validate_pdf(countersigned, trust_roots=list(identity.chain))  # asn1crypto roots work as well
    assert check.valid, check.message
