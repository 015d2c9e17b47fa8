"""The static mirror of the public site stays complete and consistent with what the app serves, after every
change the public can see, and a rebuild repairs it."""

import hashlib
import json
import re
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session

from service.bulletins import mirror
from service.bulletins import service as bulletins
from service.config import settings
from service.db import utcnow, write_engine
from service.i18n import LANGUAGES
from tests.bulletins.build import Officers, settle_mirror, staff

KEPT_BESIDE = {"manifest.json"}  # the manifest itself (the builders' lock file is beside the folder)
PUBLIC_STATUSES = {"published", "retracted"}


def _lang_query(language: str | None) -> str:
    return "" if language in (None, settings.default_language) else f"?lang={language}"


def url_of(name: str) -> str:
    """The URL the app serves a mirrored file's bytes at; an unknown file fails the test."""
    if m := re.fullmatch(r"(index|fact-checks)(?:\.([a-z]{2}))?\.html", name):
        path = "/" if m[1] == "index" else "/fact-checks"
        return path + _lang_query(m[2])
    if m := re.fullmatch(r"updates/(\d+)(?:\.([a-z]{2}))?\.html", name):
        return f"/updates/{m[1]}" + _lang_query(m[2])
    if re.fullmatch(r"updates/\d+/cap\.xml|feeds/(updates|cap)\.atom|static/css/public\.css", name):
        return "/" + name
    if name == "api/v1/public/updates.json":
        return "/api/v1/public/updates"
    raise AssertionError(f"the mirror holds {name}, which no public URL serves")


def update_files(bulletin_id: int) -> set[str]:
    names = {f"updates/{bulletin_id}.{language}.html" for language in LANGUAGES}
    return names | {f"updates/{bulletin_id}.html", f"updates/{bulletin_id}/cap.xml"}


def checked_mirror(client, officers: Officers, directory: Path) -> dict[str, bytes]:
    """Proves the mirror whole and consistent; returns its files' bytes by name."""
    settle_mirror()
    manifest = json.loads((directory / "manifest.json").read_bytes())
    datetime.fromisoformat(manifest["generated_at"])
    listed: dict[str, str] = manifest["files"]
    on_disk = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
    assert not [name for name in on_disk if ".incoming-" in name], "a temporary file was left behind"
    assert on_disk - KEPT_BESIDE == set(listed), on_disk ^ set(listed)

    files = {name: (directory / name).read_bytes() for name in listed}
    for name, data in files.items():
        assert hashlib.sha256(data).hexdigest() == listed[name], f"{name} differs from its manifest entry"
        served = client.get(url_of(name), headers={"Accept-Encoding": "identity"})
        assert served.status_code == 200, name
        assert served.content == data, f"{name} is not what {url_of(name)} serves"
    for language in LANGUAGES:
        assert f"index.{language}.html" in files and f"fact-checks.{language}.html" in files
    assert {"index.html", "fact-checks.html", "feeds/updates.atom", "feeds/cap.atom"} <= set(files)
    assert {"api/v1/public/updates.json", mirror.STYLESHEET} <= set(files)

    every = client.get("/api/v1/bulletins?limit=200", headers=officers.author).json()["items"]
    for update in every:
        names = update_files(update["id"])
        if update["status"] in PUBLIC_STATUSES:
            assert names <= set(files), (update["id"], update["status"], names - set(files))
        else:
            assert not [n for n in files if n in names or n.startswith(f"updates/{update['id']}/")], update
    return files


def test_the_mirror_follows_every_public_change_and_a_rebuild_repairs_it(client, session, engine: Engine,
                                                                         public_mirror: Path):  # fmt: skip
    """After an emergency is declared, updates published, drafts/reviews/schedules made, a correction, a
    fact-check published and its verdict revised, a retraction, the emergency closed and a scheduled update
    published by the job: the folder holds exactly the manifest's files, each matching its SHA-256 and the
    bytes the app serves at its URL; every public update has its pages, no other does. Then files lost,
    changed or left over are put right by `mirror.refresh(engine)`."""
    assert settings.effective_public_mirror_dir == public_mirror
    officers = Officers(client, session)
    coordinator = staff(session, "coordinator")
    checked_mirror(client, officers, public_mirror)

    emergency = client.post(
        "/api/v1/emergencies", headers=coordinator,
        json={"title": "Наводнение МИРОР", "kind": "flood", "area": "кв. „Изток“", "severity": "severe"},
    ).json()  # fmt: skip
    files = checked_mirror(client, officers, public_mirror)
    assert "Наводнение МИРОР" in files["index.bg.html"].decode()

    first = officers.published(polygon="42.60,23.03 42.61,23.05 42.59,23.06 42.60,23.03")["id"]
    second = officers.published(language="en", title="Shelter at the sports hall", body="Open all night.")["id"]
    hidden = [officers.draft()["id"], officers.in_review()["id"]]
    scheduled = officers.scheduled(hours=1, title="Насрочено съобщение")["id"]
    back = officers.in_review()["id"]
    client.post(f"/api/v1/bulletins/{back}/send-back", json={"reason": "Липсва час."}, headers=officers.approver)
    files = checked_mirror(client, officers, public_mirror)
    assert update_files(first) | update_files(second) <= set(files)
    assert not [n for n in files if re.match(rf"updates/({'|'.join(map(str, [*hidden, scheduled, back]))})\b", n)]

    officers.correct(first, "Мостът е отворен само за пешеходци МИРОР-2.")
    files = checked_mirror(client, officers, public_mirror)
    assert "МИРОР-2" in files[f"updates/{first}.bg.html"].decode()
    assert b"<msgType>Update</msgType>" in files[f"updates/{first}/cap.xml"]

    rumour, answer = officers.fact_check(wording="Язовирът ще прелее тази нощ МИРОР-3.")
    files = checked_mirror(client, officers, public_mirror)
    assert "МИРОР-3" in files["fact-checks.bg.html"].decode()
    assert update_files(answer["id"]) <= set(files)
    # A published fact-check's verdict changes only by retracting it (and answering anew through review).
    revised = {"verdict": "misleading", "evidence": "Данни от язовира.", "response": "Нивото е под критичното."}
    verdict_url = f"/api/v1/rumours/{rumour['id']}/verdict"
    assert client.post(verdict_url, json=revised, headers=officers.author).status_code == 409
    before = files[f"updates/{answer['id']}.bg.html"]
    officers.retract(answer["id"], reason="Присъдата се преразглежда.")
    assert client.post(verdict_url, json=revised, headers=officers.author).is_success
    files = checked_mirror(client, officers, public_mirror)
    assert files[f"updates/{answer['id']}.bg.html"] != before
    assert "МИРОР-3" not in files["fact-checks.bg.html"].decode()

    officers.retract(second, reason="Залата е затворена.")
    files = checked_mirror(client, officers, public_mirror)
    assert update_files(second) <= set(files)
    assert b"<msgType>Cancel</msgType>" in files[f"updates/{second}/cap.xml"]
    assert "Shelter at the sports hall" not in files["index.en.html"].decode()

    eid = emergency["id"]
    for action in ("stand-down", "close"):
        assert client.post(f"/api/v1/emergencies/{eid}/{action}", json={}, headers=coordinator).is_success
        files = checked_mirror(client, officers, public_mirror)
    assert "Наводнение МИРОР" not in files["index.bg.html"].decode()

    with Session(write_engine(engine)) as job_session:  # what the scheduler's job does, an hour later
        assert bulletins.publish_due(session=job_session, now=utcnow() + timedelta(hours=2)) == [scheduled]
    files = checked_mirror(client, officers, public_mirror)
    assert update_files(scheduled) <= set(files)
    assert "Насрочено съобщение" in files["index.html"].decode()

    lost = [f"updates/{first}.en.html", "feeds/cap.atom", "index.html", mirror.STYLESHEET]
    for name in lost:
        (public_mirror / name).unlink()
    (public_mirror / "fact-checks.en.html").write_bytes(b"<p>tampered</p>")
    (public_mirror / "updates" / "999999.bg.html").write_bytes(b"left over")
    mirror.refresh(engine)
    repaired = checked_mirror(client, officers, public_mirror)
    assert repaired == files
    assert not (public_mirror / "updates" / "999999.bg.html").exists()


def test_a_mirror_without_its_manifest_is_rebuilt_whole(client, session, engine: Engine, public_mirror: Path):
    """A change after the manifest is lost rebuilds every public update's files, not only the changed one."""
    officers = Officers(client, session)
    kept = officers.published(title="Първо съобщение")["id"]
    settle_mirror()
    (public_mirror / "manifest.json").unlink()
    (public_mirror / f"updates/{kept}.bg.html").unlink()
    officers.published(title="Второ съобщение")
    files = checked_mirror(client, officers, public_mirror)
    assert update_files(kept) <= set(files)
