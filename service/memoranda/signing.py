"""PAdES signatures on memorandum PDFs: the configured signing identity, signing, and checking a signature.

The identity is a private key and its certificate (plus an optional chain) as PEM or DER files, named by the
`ACCORD_SIGNING_*` settings; a PKCS#12 bundle is not read (`openssl pkcs12 -nodes` splits one into PEM files).
Signatures are PAdES baseline B-B: no timestamp authority is contacted, so the signing time is the signer's own.
Signing and checking block (pyHanko runs its own event loop): call them from `def` routes and jobs only.
"""

import asyncio
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Any, TypeVar

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from pyhanko.keys import load_certs_from_pemder_data
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.metadata.model import VENDOR
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.fields import SigSeedSubFilter, enumerate_sig_fields
from pyhanko.sign.signers import PdfSignatureMetadata, PdfSigner, SimpleSigner
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.settings import KeyUsageConstraints
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.registry import SimpleCertificateStore

from service.config import settings

# A document-signing certificate carries nonRepudiation (contentCommitment), digitalSignature, or both.
SIGNER_KEY_USAGE = KeyUsageConstraints(key_usage={"digital_signature", "non_repudiation"}, match_all_key_usages=False)


T = TypeVar("T")


class SigningConfigError(ValueError):
    """The `ACCORD_SIGNING_*` settings name files that do not make a usable signing identity."""


@dataclass(frozen=True)
class SigningIdentity:
    """A private key with its certificate and the chain up to (and ideally including) the root."""

    key: asn1_keys.PrivateKeyInfo
    certificate: asn1_x509.Certificate
    chain: tuple[asn1_x509.Certificate, ...] = ()

    @property
    def name(self) -> str:
        """The certificate subject's common name (or the whole subject when it has none)."""
        return _common_name(self.certificate)

    @classmethod
    def from_files(
        cls, *, key_path: Path, cert_path: Path, chain_path: Path | None = None, key_password: str = ""
    ) -> "SigningIdentity":
        """Loads a PEM or DER key (encrypted if `key_password` is set), certificate and optional chain."""
        private_key = _load_key(key_path, key_password)
        certs = _load_certs(cert_path, "ACCORD_SIGNING_CERT_PATH")
        # A "full chain" file puts the signer's certificate first; the rest is chain.
        certificate, chain = certs[0], certs[1:]
        if chain_path is not None:
            chain += _load_certs(chain_path, "ACCORD_SIGNING_CHAIN_PATH")
        public_key = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if public_key != certificate.public_key.dump():
            raise SigningConfigError(
                f"The private key in {key_path} does not belong to the certificate in {cert_path}."
            )
        pkcs8 = private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return cls(key=asn1_keys.PrivateKeyInfo.load(pkcs8), certificate=certificate, chain=tuple(chain))


def configured_identity() -> SigningIdentity | None:
    """The identity the settings name, loaded once; None when no signing certificate is configured."""
    if settings.signing_cert_path is None:
        return None
    if settings.signing_key_path is None:
        raise SigningConfigError("ACCORD_SIGNING_CERT_PATH is set but ACCORD_SIGNING_KEY_PATH is not.")
    return _identity_from_files(
        settings.signing_key_path,
        settings.signing_cert_path,
        settings.signing_chain_path,
        settings.signing_key_password,
    )


@cache
def _identity_from_files(
    key_path: Path, cert_path: Path, chain_path: Path | None, key_password: str
) -> SigningIdentity:
    return SigningIdentity.from_files(
        key_path=key_path, cert_path=cert_path, chain_path=chain_path, key_password=key_password
    )


def sign_pdf(pdf: bytes, *, identity: SigningIdentity, reason: str, location: str, name: str | None = None) -> bytes:
    """Appends a PAdES signature over the whole of `pdf` as an incremental update; returns the signed file."""
    writer = IncrementalPdfFileWriter(BytesIO(pdf))
    _keep_producer_consistent(writer)
    signer = SimpleSigner(
        signing_cert=identity.certificate,
        signing_key=identity.key,
        cert_registry=SimpleCertificateStore.from_certs(identity.chain),
    )
    metadata = PdfSignatureMetadata(
        field_name=_free_field_name(writer),
        subfilter=SigSeedSubFilter.PADES,
        md_algorithm="sha256",
        reason=reason,
        location=location,
        name=name or identity.name,
    )
    # For PAdES B-T, pass `timestamper=pyhanko.sign.timestamps.HTTPTimeStamper(tsa_url)` to the PdfSigner;
    # with `use_pades_lta=True` and a validation context in the metadata, B-LTA.
    output = _off_event_loop(PdfSigner(metadata, signer=signer).sign_pdf, writer)
    return output.getvalue()


def _off_event_loop(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`function(...)`, on another thread if this one runs an event loop: pyHanko's synchronous calls use
    `asyncio.run`, which refuses to start inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return function(*args, **kwargs)
    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(function, *args, **kwargs).result()


def _free_field_name(writer: IncrementalPdfFileWriter) -> str:
    taken = {name for name, _, _ in enumerate_sig_fields(writer)}
    return next(f"Signature{n}" for n in range(1, len(taken) + 2) if f"Signature{n}" not in taken)


def _keep_producer_consistent(writer: IncrementalPdfFileWriter) -> None:
    """PDF/A wants the Info /Producer equal to the XMP pdf:Producer. pyHanko sets the XMP one to its own name
    but appends its name to the Info one, unless that already names it: so give the Info one pyHanko's name."""
    try:
        info_ref = writer.trailer.raw_get("/Info")
    except KeyError:
        return
    if not isinstance(info_ref, generic.IndirectObject):
        return
    info = info_ref.get_object()
    if info.get("/Producer") != VENDOR:
        info["/Producer"] = generic.TextStringObject(VENDOR)
        writer.mark_update(info_ref)


@dataclass(frozen=True)
class SignatureCheck:
    """What a PDF's signatures say: present, unchanged since signing, made by a trusted certificate."""

    signed: bool
    intact: bool
    trusted: bool
    signer_name: str | None
    signed_at: datetime | None
    message: str

    @property
    def valid(self) -> bool:
        return self.signed and self.intact and self.trusted


def validate_pdf(pdf: bytes, *, trust_roots: Iterable[x509.Certificate | asn1_x509.Certificate]) -> SignatureCheck:
    """Checks every signature in `pdf` against `trust_roots`, offline; reports on the last (outermost) one.

    Intact means every signature's digest and value check out and the last one covers the whole file, so
    nothing was appended after it. Trusted means every signer's certificate chains to one of `trust_roots`.
    """
    try:
        signatures = PdfFileReader(BytesIO(pdf)).embedded_signatures
    except Exception as error:  # whatever a damaged or hostile upload makes the parser raise
        return SignatureCheck(False, False, False, None, None, f"The file cannot be read as a PDF: {error}")
    if not signatures:
        return SignatureCheck(False, False, False, None, None, "The document carries no digital signature.")

    roots = [_as_asn1(cert) for cert in trust_roots]
    intact = trusted = True
    problems: list[str] = []
    signer_name = signed_at = last_coverage = None
    for embedded in signatures:
        context = ValidationContext(trust_roots=roots, allow_fetching=False)
        try:
            status = _off_event_loop(validate_pdf_signature, embedded, context, key_usage_settings=SIGNER_KEY_USAGE)
        except Exception as error:  # a tampered signature dictionary or CMS blob fails in many ways
            intact = trusted = False
            signer_name = signed_at = last_coverage = None
            problems.append(f"Signature {embedded.field_name!r} cannot be checked: {error}")
            continue
        signer_name = _common_name(status.signing_cert)
        signed_at = status.signer_reported_dt
        last_coverage = status.coverage
        if not (status.intact and status.valid):
            # pyHanko does not judge the trust of a broken signature; there is nothing left to trust.
            intact = trusted = False
            problems.append(f"Signature {embedded.field_name!r} does not match the document: it was changed.")
        elif not status.trusted:
            trusted = False
            problems.append(f"The certificate of {signer_name} does not chain to a trusted root.")
    if intact and last_coverage != SignatureCoverageLevel.ENTIRE_FILE:
        intact = False
        problems.append("The file was changed after its last signature.")

    message = " ".join(dict.fromkeys(problems)) or (
        f"Signed by {signer_name}; unchanged since signing; the certificate is trusted."
    )
    return SignatureCheck(True, intact, trusted, signer_name, signed_at, message)


def _load_key(path: Path, password: str) -> PrivateKeyTypes:
    data = _read(path, "ACCORD_SIGNING_KEY_PATH")
    load = serialization.load_pem_private_key if b"-----BEGIN" in data else serialization.load_der_private_key
    try:
        return load(data, password=password.encode() or None)
    except (ValueError, TypeError) as error:
        raise SigningConfigError(
            f"Cannot read the private key in {path} (check ACCORD_SIGNING_KEY_PASSWORD): {error}"
        ) from error


def _load_certs(path: Path, setting: str) -> list[asn1_x509.Certificate]:
    data = _read(path, setting)
    try:
        certs = list(load_certs_from_pemder_data(data))
        for cert in certs:
            cert.native  # noqa: B018 - parse now, so a broken file fails here and not while signing
    except ValueError as error:
        raise SigningConfigError(f"Cannot read the certificates in {path}: {error}") from error
    if not certs:
        raise SigningConfigError(f"{path} holds no certificate.")
    return certs


def _read(path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise SigningConfigError(f"Cannot read {path}, named by {setting}: {error.strerror}.") from error


def _as_asn1(cert: x509.Certificate | asn1_x509.Certificate) -> asn1_x509.Certificate:
    if isinstance(cert, asn1_x509.Certificate):
        return cert
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _common_name(cert: asn1_x509.Certificate) -> str:
    return cert.subject.native.get("common_name") or cert.subject.human_friendly
