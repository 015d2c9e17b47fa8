"""Every kind of memorandum in both languages, issued through the API: the archived file is the document whose
SHA-256 the memorandum records, a PDF/A-3b naming its parties and its verification code, carrying its filled
variables as an attachment.

A document renders the same whatever the database, and ten renders take a while: every kind and language runs
on the first configured backend, one of them on the other (the API and archive path there too).
"""

import hashlib
import json
import re
from io import BytesIO

import pytest
from pypdf import PdfReader

from service.memoranda import archive
from service.memoranda.documents import KINDS, LANGUAGES
from tests.conftest import BACKENDS
from tests.memoranda.build import create_body
from tests.memoranda.world import World, make_world

CASES = [(kind, language) for kind in KINDS for language in LANGUAGES]
ON_EVERY_BACKEND = ("logistics_support", "bg")


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def one_backend_for_most(request, database_factory, kind, language) -> None:
    """Skips (before a database is made for the test) the cases left to the first backend."""
    if database_factory.backend != BACKENDS[0] and (kind, language) != ON_EVERY_BACKEND:
        pytest.skip(f"rendering does not depend on the database: every kind and language runs on {BACKENDS[0]}")


@pytest.fixture
def world(client, session, engine) -> World:
    return make_world(client, session, engine)


@pytest.mark.parametrize(("kind", "language"), CASES)
def test_the_issued_document_is_archived_under_its_hash_and_reads_back(one_backend_for_most, world, kind, language):
    w = world
    created = w.call("POST", "/memoranda", "coordinator", create_body([w.org_a, w.org_b], kind, language))
    assert created.status_code == 201, created.text
    issued = w.call("POST", f"/memoranda/{created.json()['id']}/issue", "coordinator")
    assert issued.status_code == 200, issued.text
    memorandum = issued.json()

    stored = archive.path_of(memorandum["sha256"])
    content = stored.read_bytes()
    assert hashlib.sha256(content).hexdigest() == memorandum["sha256"]
    assert stored.stat().st_mode & 0o777 == 0o444  # written once, never changed
    assert not list(stored.parent.glob(".incoming-*"))  # no half-written file left beside it
    served = w.call("GET", f"/memoranda/{memorandum['id']}/pdf", "partner A")
    assert served.status_code == 200 and served.content == content

    reader = PdfReader(BytesIO(content))
    pages = [flat(page.extract_text()) for page in reader.pages]
    text = " ".join(pages)
    for party in (w.org_a, w.org_b):
        assert flat(party.name) in text, party.name  # Cyrillic, in the English documents too
    assert re.search(r"[А-Яа-я]{4}", text)
    assert all(memorandum["verification_code"] in page for page in pages)  # in every page's footer
    assert ("ПРОЕКТ" if language == "bg" else "DRAFT") not in text

    xmp = reader.trailer["/Root"]["/Metadata"].get_object().get_data().decode()
    assert re.search(r'pdfaid:part(="|>)3', xmp) and re.search(r'pdfaid:conformance(="|>)B', xmp)
    assert list(reader.attachments) == ["variables.json"]
    assert json.loads(reader.attachments["variables.json"][0]) == memorandum["variables"]
    assert memorandum["variables"] == create_body([], kind, language)["variables"]
