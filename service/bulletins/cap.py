"""CAP 1.2 messages (OASIS Common Alerting Protocol) for public updates.

Each published revision of an update is one message: revision 1 an `Alert`, each correction an `Update`
that references every earlier message, a retraction a `Cancel` that references them all. Messages are
made from the stored revisions, so the same update always gives the same bytes.
"""

import re
from datetime import datetime
from urllib.parse import urlsplit
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

from service.bulletins import markdown
from service.bulletins.models import CATEGORY_LABELS, Bulletin, BulletinRevision, BulletinStatus
from service.config import settings
from service.i18n import gettext_in

NS = "urn:oasis:names:tc:emergency:cap:1.2"
MEDIA_TYPE = "application/cap+xml"
_NOT_IN_IDS = re.compile(r"[\s,<&]+")  # section 3.2.1: identifiers and sender carry none of these


def _host() -> str:
    return urlsplit(settings.base_url).hostname or "localhost"


def sender() -> str:
    return _NOT_IN_IDS.sub("-", settings.cap_sender or f"crisis-accord@{_host()}")


def identifier(bulletin_id: int, number: int | None) -> str:
    """`number` None: the Cancel message of a retraction."""
    suffix = "cancel" if number is None else f"r{number}"
    return _NOT_IN_IDS.sub("-", f"{_host()}.bulletin.{bulletin_id}.{suffix}")


def cap_time(value: datetime) -> str:
    """A CAP date-time: local time, whole seconds, a numeric offset (UTC as -00:00, never Z)."""
    local = value.astimezone(ZoneInfo(settings.timezone)).replace(microsecond=0)
    text = local.isoformat()
    return text[:-6] + "-00:00" if text.endswith("+00:00") else text


def _language(code: str) -> str:
    return {"bg": "bg-BG", "en": "en-GB"}.get(code, code)


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, tag)  # in the root's default namespace (see `build`)
    if text is not None:
        element.text = text
    return element


def messages(bulletin: Bulletin, revisions: list[BulletinRevision]) -> list[tuple[str, str, str]]:
    """(identifier, sent, msgType) of every message of an update so far, the first first."""
    out = [
        (identifier(bulletin.id, r.number), cap_time(r.created_at), "Alert" if r.number == 1 else "Update")
        for r in revisions
    ]
    if bulletin.status == BulletinStatus.retracted and bulletin.retracted_at is not None:
        out.append((identifier(bulletin.id, None), cap_time(bulletin.retracted_at), "Cancel"))
    return out


def latest(bulletin: Bulletin, revisions: list[BulletinRevision]) -> tuple[str, str, str]:
    return messages(bulletin, revisions)[-1]


def build(bulletin: Bulletin, revisions: list[BulletinRevision], *, web_url: str) -> bytes:
    """The update's current CAP message (its latest revision's, or the Cancel of its retraction)."""
    if not revisions:
        raise ValueError("An update that was never published has no CAP message.")
    history = messages(bulletin, revisions)
    ident, sent, msg_type = history[-1]
    current = revisions[-1]
    _ = gettext_in(bulletin.language)

    alert = ET.Element("alert", {"xmlns": NS})
    _sub(alert, "identifier", ident)
    _sub(alert, "sender", sender())
    _sub(alert, "sent", sent)
    _sub(alert, "status", "Actual")
    _sub(alert, "msgType", msg_type)
    _sub(alert, "scope", "Public")
    if msg_type == "Cancel":
        _sub(alert, "note", bulletin.retraction_reason)
    elif msg_type == "Update" and current.reason:
        _sub(alert, "note", current.reason)
    if len(history) > 1:
        _sub(alert, "references", " ".join(f"{sender()},{i},{s}" for i, s, _t in history[:-1]))
    _sub(alert, "incidents", identifier(bulletin.id, 1))

    info = _sub(alert, "info")
    _sub(info, "language", _language(bulletin.language))
    _sub(info, "category", bulletin.cap_category.value)
    _sub(info, "event", _(CATEGORY_LABELS[bulletin.category]))
    _sub(info, "responseType", bulletin.response_type.value)
    _sub(info, "urgency", "Past" if msg_type == "Cancel" else bulletin.urgency.value)
    _sub(info, "severity", bulletin.severity.value)
    _sub(info, "certainty", bulletin.certainty.value)
    if bulletin.effective:
        _sub(info, "effective", cap_time(bulletin.effective))
    if bulletin.expires:
        _sub(info, "expires", cap_time(bulletin.expires))
    _sub(info, "senderName", settings.municipality_name if bulletin.language == "bg" else settings.municipality_name_en)
    headline = current.title if msg_type != "Cancel" else _("Retracted: {title}").format(title=current.title)
    _sub(info, "headline", headline)
    description = markdown.to_text(current.body)
    if msg_type == "Cancel":
        description = _("This update was retracted: {reason}").format(reason=bulletin.retraction_reason)
    _sub(info, "description", description)
    if current.instruction and msg_type != "Cancel":
        _sub(info, "instruction", markdown.to_text(current.instruction))
    _sub(info, "web", web_url)
    area = _sub(info, "area")
    _sub(area, "areaDesc", bulletin.area_desc)
    if bulletin.polygon:
        _sub(area, "polygon", bulletin.polygon)
    return ET.tostring(alert, encoding="utf-8", xml_declaration=True)
