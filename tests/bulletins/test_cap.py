"""CAP 1.2 messages: valid against the OASIS schema and against the section 3 rules it cannot express."""

import io
import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import xmlschema

from service.config import settings
from tests.bulletins.build import UPDATE, Officers

SCHEMA = Path(__file__).resolve().parents[1] / "reference" / "CAP-v1.2-schema.xsd"
CAP = "{urn:oasis:names:tc:emergency:cap:1.2}"
# Section 3.3.2: "YYYY-MM-DDThh:mm:ssXzh:hh", a numeric offset ("-00:00" for UTC), never "Z".
DATE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
# Section 3.2.1: identifier and sender "MUST NOT include spaces, commas or restricted characters (< and &)".
NOT_IN_IDS = re.compile(r"[\s,<&]")
POLYGON = "42.6081,23.0314 42.6150,23.0502 42.5989,23.0611 42.5920,23.0400 42.6081,23.0314"


@cache
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(SCHEMA)


@dataclass(frozen=True)
class Message:
    identifier: str
    sender: str
    sent: str
    msg_type: str
    references: list[tuple[str, str, str]]
    root: ET.Element

    def text(self, path: str) -> str | None:
        element = self.root.find(path.replace("cap:", CAP))
        return None if element is None else element.text

    def all_text(self, path: str) -> list[str]:
        return [e.text or "" for e in self.root.iterfind(path.replace("cap:", CAP))]


def checked(body: bytes) -> Message:
    """The message, once it passed the XSD and every section 3 rule the XSD leaves out."""
    schema().validate(io.BytesIO(body))
    root = ET.fromstring(body)  # noqa: S314 (the app's own message)
    assert root.tag == f"{CAP}alert"

    def one(tag: str) -> str:
        found = root.findall(f"{CAP}{tag}")
        assert len(found) == 1, tag
        return found[0].text or ""

    identifier, sender, sent, msg_type = one("identifier"), one("sender"), one("sent"), one("msgType")
    for value in (identifier, sender):
        assert value and not NOT_IN_IDS.search(value), f"{value!r} has a space, comma, < or &"

    times = [sent]
    for info in root.iterfind(f"{CAP}info"):
        times += [e.text or "" for tag in ("effective", "onset", "expires") for e in info.iterfind(f"{CAP}{tag}")]
    references = []
    for element in root.iterfind(f"{CAP}references"):
        assert element.text and element.text == element.text.strip() and "  " not in element.text
        for triplet in element.text.split(" "):
            parts = triplet.split(",")
            assert len(parts) == 3, f"{triplet!r} is not sender,identifier,sent"
            assert all(parts) and not any(NOT_IN_IDS.search(p) for p in parts[:2]), triplet
            references.append((parts[0], parts[1], parts[2]))
            times.append(parts[2])
    for value in times:
        assert DATE_TIME.match(value), f"{value!r} is not a CAP date-time with a numeric offset"
        assert "Z" not in value
        datetime.fromisoformat(value)  # a real date and time, not only the right shape

    for polygon in root.iterfind(f"{CAP}info/{CAP}area/{CAP}polygon"):
        pairs = [tuple(float(n) for n in point.split(",")) for point in (polygon.text or "").split(" ")]
        assert len(pairs) >= 4 and pairs[0] == pairs[-1], polygon.text
        assert all(len(p) == 2 and -90 <= p[0] <= 90 and -180 <= p[1] <= 180 for p in pairs), polygon.text
    return Message(identifier, sender, sent, msg_type, references, root)


def current_message(client, bulletin_id: int) -> Message:
    response = client.get(f"/updates/{bulletin_id}/cap.xml")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/cap+xml")
    return checked(response.content)


def instant(value: str) -> datetime:
    return datetime.fromisoformat(value)


VARIANTS = {
    "bg, polygon, effective/expires, instruction, corrected twice, retracted": {
        "fields": {
            "language": "bg", "polygon": POLYGON, "effective": "2026-03-01T08:00:00+02:00",
            "expires": "2026-03-03T20:00:00+02:00", "instruction": "Не пресичайте моста.\n\n*Следете* сайта.",
        },
        "corrections": 2,
    },
    "en, no polygon, no times, no instruction, corrected twice, retracted": {
        "fields": {"language": "en", "title": "Struma bridge closed", "body": "The bridge is **closed**.",
                   "area_desc": "Iztok quarter, Pernik"},
        "corrections": 2,
    },
    "bg, expires only, retracted without a correction": {
        "fields": {"language": "bg", "expires": "2026-07-15T23:30:00+03:00", "polygon": POLYGON},
        "corrections": 0,
    },
    "en, polygon and instruction, corrected once, retracted": {
        "fields": {"language": "en", "title": "Boil tap water", "body": "Boil water for a minute.",
                   "polygon": POLYGON, "instruction": "Boil *all* drinking water."},
        "corrections": 1,
    },
}  # fmt: skip


@pytest.mark.parametrize("variant", VARIANTS.values(), ids=VARIANTS.keys())
def test_every_message_of_an_update_validates_and_references_exactly_the_earlier_ones(client, session, variant):
    """Alert on publication, an Update per correction, a Cancel on retraction: each passes the XSD and the
    section 3 rules, carries the update's CAP fields, and references every earlier message, no other."""
    officers = Officers(client, session)
    fields = variant["fields"]
    update = officers.published(**fields)
    bid = update["id"]
    history = [current_message(client, bid)]
    for n in range(variant["corrections"]):
        extra = {"instruction": f"Следете сайта, версия {n + 2}."} if "instruction" in fields else {}
        officers.correct(bid, f"Поправен текст, версия {n + 2}.", reason=f"Поправка {n + 1}", **extra)
        history.append(current_message(client, bid))
    officers.retract(bid, reason="Публикувано по грешка")
    history.append(current_message(client, bid))

    assert [m.msg_type for m in history] == ["Alert"] + ["Update"] * variant["corrections"] + ["Cancel"]
    assert len({m.identifier for m in history}) == len(history)
    assert {m.sender for m in history} == {history[0].sender}
    for i, message in enumerate(history):
        assert message.references == [(m.sender, m.identifier, m.sent) for m in history[:i]]
        assert message.text("cap:status") == "Actual" and message.text("cap:scope") == "Public"
        assert message.text("cap:info/cap:language") == {"bg": "bg-BG", "en": "en-GB"}[fields["language"]]
        assert message.text("cap:info/cap:web") == f"{settings.base_url}/updates/{bid}"
        assert message.all_text("cap:info/cap:area/cap:polygon") == ([POLYGON] if "polygon" in fields else [])
        for name in ("effective", "expires"):
            sent = message.text(f"cap:info/cap:{name}")
            assert (sent and instant(sent)) == (fields.get(name) and instant(fields[name]))
        wants_instruction = "instruction" in fields and message.msg_type != "Cancel"
        assert (message.text("cap:info/cap:instruction") is not None) == wants_instruction
    assert instant(history[0].sent) == datetime.fromisoformat(update["published_at"]).replace(microsecond=0)
    assert [instant(m.sent) for m in history] == sorted(instant(m.sent) for m in history)
    assert history[-1].text("cap:info/cap:urgency") == "Past"
    assert "Публикувано по грешка" in (history[-1].text("cap:note") or "")
    if variant["corrections"]:
        assert history[-2].text("cap:note") == f"Поправка {variant['corrections']}"
        assert history[-2].text("cap:info/cap:description") == f"Поправен текст, версия {variant['corrections'] + 1}."


def test_messages_of_different_updates_never_share_an_identifier(client, session):
    """Identifiers are unique across every message the service sends, not only within one update."""
    officers = Officers(client, session)
    first, second = officers.published(language="bg")["id"], officers.published(language="en")["id"]
    seen = [current_message(client, first), current_message(client, second)]
    officers.correct(first, "Нов текст.")
    officers.retract(second)
    seen += [current_message(client, first), current_message(client, second)]
    assert len({m.identifier for m in seen}) == 4
    assert [m.msg_type for m in seen] == ["Alert", "Alert", "Update", "Cancel"]


def test_a_sender_setting_with_forbidden_characters_still_gives_a_valid_sender(client, session, monkeypatch):
    """A configured CAP sender with spaces, commas, `<` and `&` is made safe, in the message and in the
    references that name it."""
    monkeypatch.setattr(settings, "cap_sender", "Кризисен щаб, Община Примерно <ops>&co")
    officers = Officers(client, session)
    bid = officers.published(polygon=POLYGON)["id"]
    officers.correct(bid, "Поправка.")
    message = current_message(client, bid)
    assert message.msg_type == "Update"
    assert message.references[0][0] == message.sender
    assert "Кризисен" in message.sender


BAD_POLYGONS = {
    "open": "42.60,23.03 42.61,23.05 42.59,23.06 42.59,23.04",
    "three points": "42.60,23.03 42.61,23.05 42.60,23.03",
    "latitude out of range": "91.0,23.03 42.61,23.05 42.59,23.06 91.0,23.03",
    "longitude out of range": "42.60,181.5 42.61,23.05 42.59,23.06 42.60,181.5",
    "not lat,lon pairs": "42.60;23.03 42.61;23.05 42.59;23.06 42.60;23.03",
}


def _names_polygon(response) -> bool:
    return response.status_code == 422 and any(e["loc"][-1] == "polygon" for e in response.json()["detail"])


@pytest.mark.parametrize("polygon", BAD_POLYGONS.values(), ids=BAD_POLYGONS.keys())
def test_the_api_refuses_a_polygon_cap_does_not_allow_naming_the_field(client, session, polygon):
    """Open rings, fewer than four points, coordinates off the globe: 422 naming `polygon`, on create and
    on a draft's change alike; a closed ring of four points is taken."""
    officers = Officers(client, session)
    created = client.post("/api/v1/bulletins", json={**UPDATE, "polygon": polygon}, headers=officers.author)
    assert _names_polygon(created), created.text
    draft = officers.draft()
    changed = client.patch(f"/api/v1/bulletins/{draft['id']}", json={"polygon": polygon}, headers=officers.author)
    assert _names_polygon(changed), changed.text
    assert officers.get(draft["id"])["polygon"] is None
    fine = client.patch(f"/api/v1/bulletins/{draft['id']}", json={"polygon": POLYGON}, headers=officers.author)
    assert fine.status_code == 200 and fine.json()["polygon"] == POLYGON
