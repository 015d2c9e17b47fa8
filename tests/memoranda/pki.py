"""A throwaway PKI for signing tests: a root CA and a document-signing certificate it issued, as PEM files."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

SIGNER_NAME = "Община Примерно – кризисен щаб"
KEY_PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class SigningPki:
    root: x509.Certificate
    signer: x509.Certificate
    key_path: Path
    cert_path: Path
    chain_path: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "BG"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Crisis Accord tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """A CA signs certificates; a document signer signs with digitalSignature and nonRepudiation."""
    usages = dict.fromkeys(
        ("key_encipherment", "data_encipherment", "key_agreement", "encipher_only", "decipher_only"), False
    )
    return x509.KeyUsage(digital_signature=not ca, content_commitment=not ca, key_cert_sign=ca, crl_sign=ca, **usages)


def _certificate(
    *, common_name: str, key: rsa.RSAPrivateKey, issuer: x509.Certificate | None, issuer_key: rsa.RSAPrivateKey
) -> x509.Certificate:
    now = datetime.now(UTC)
    ca = issuer is None
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name) if ca else issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650 if ca else 365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(_key_usage(ca=ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    return builder.sign(issuer_key, hashes.SHA256())


def make_root(common_name: str = "Crisis Accord Test Root") -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """A self-signed CA certificate, valid from yesterday for ten years."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _certificate(common_name=common_name, key=key, issuer=None, issuer_key=key), key


def make_signer(
    root: x509.Certificate, root_key: rsa.RSAPrivateKey, common_name: str = SIGNER_NAME
) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """An end-entity document-signing certificate issued by `root`, valid from yesterday for a year."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _certificate(common_name=common_name, key=key, issuer=root, issuer_key=root_key), key


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_pki(directory: Path) -> SigningPki:
    """A root and a signer; the signer's key (encrypted with KEY_PASSWORD), certificate and chain as PEM files."""
    root, root_key = make_root()
    signer, signer_key = make_signer(root, root_key)
    encryption = serialization.BestAvailableEncryption(KEY_PASSWORD.encode())
    key_path, cert_path, chain_path = directory / "signer.key", directory / "signer.pem", directory / "chain.pem"
    key_path.write_bytes(
        signer_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    cert_path.write_bytes(pem(signer))
    chain_path.write_bytes(pem(root))
    return SigningPki(root=root, signer=signer, key_path=key_path, cert_path=cert_path, chain_path=chain_path)
