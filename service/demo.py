"""Fictional demo data for a Bulgarian municipality, and the demo logins that `make run` prints.

Every name, number and address here is invented; the registration numbers only have valid check digits.
"""

from datetime import timedelta

from sqlmodel import Session, select

from service.config import settings
from service.db import utcnow
from service.partners import service as partners
from service.partners.models import ContactCreate, OrganisationCreate
from service.users import service as users
from service.users.models import Role, User, UserCreate

DEMO_PASSWORD = "demo-parola-2026"  # noqa: S105 (printed by `make run`: demo logins only)
DEMO_USERS = [
    ("admin@demo.accord.bg", "Мария Петрова", [Role.admin]),
    ("koordinator@demo.accord.bg", "Георги Иванов", [Role.coordinator]),
    ("pr@demo.accord.bg", "Елена Димитрова", [Role.communications]),
    # Public updates need a second pair of eyes: the officer who approves is never the one who wrote.
    ("pr2@demo.accord.bg", "Николай Стоянов", [Role.communications]),
]
PARTNER_LOGIN = "partnor@demo.accord.bg"

ORGANISATIONS = [
    {
        "name": "Сдружение „Доброволци за Примерно“",
        "name_en": "Volunteers for Primerno Association",
        "kind": "ngo",
        "registration_number": "201004516",
        "sectors": ["volunteers", "shelter", "food"],
        "capabilities": "60 обучени доброволци; палатки за 120 души; полева кухня за 300 порции дневно.",
        "address": "ул. „Възраждане“ 12, гр. Примерно",
        "service_area": "Община Примерно и съседните села",
        "email": "office@dobrovolci-primerno.example",
        "phone": "+359 76 600 101",
        "contacts": [
            {
                "full_name": "Иван Стоянов",
                "role": "Председател",
                "phone": "+359 888 100 201",
                "email": "ivan@dobrovolci-primerno.example",
                "is_primary": True,
                "available_24_7": True,
            },
            {"full_name": "Петя Николова", "role": "Координатор доброволци", "phone": "+359 888 100 202"},
        ],
        "verified_days_ago": 40,
    },
    {
        "name": "„Минерална вода Струма“ ЕООД",
        "name_en": "Struma Mineral Water Ltd",
        "kind": "business",
        "registration_number": "113003225",
        "sectors": ["water", "transport"],
        "capabilities": "Бутилирана вода: до 20 000 л на денонощие; 4 камиона с ремаркета.",
        "address": "Промишлена зона, гр. Примерно",
        "service_area": "Югозападна България",
        "website": "https://struma-water.example",
        "phone": "+359 76 600 202",
        "contacts": [
            {
                "full_name": "Николай Георгиев",
                "role": "Управител",
                "phone": "+359 887 200 301",
                "email": "manager@struma-water.example",
                "is_primary": True,
            },
            {
                "full_name": "Диспечер",
                "role": "Денонощен диспечер",
                "phone": "+359 887 200 399",
                "available_24_7": True,
            },
        ],
        "verified_days_ago": 400,
    },
    {
        "name": "Български червен кръст – Областен съвет Примерно",
        "name_en": "Bulgarian Red Cross – Primerno Regional Council",
        "kind": "ngo",
        "registration_number": "203987129",
        "sectors": ["medical", "shelter", "food", "volunteers"],
        "capabilities": "Първа помощ, психологическа подкрепа, хуманитарни пакети, временен подслон.",
        "address": "бул. „Христо Ботев“ 3, гр. Примерно",
        "service_area": "Област Примерно",
        "phone": "+359 76 600 303",
        "contacts": [
            {
                "full_name": "Десислава Маринова",
                "role": "Секретар",
                "phone": "+359 889 300 401",
                "email": "sekretar@redcross-primerno.example",
                "is_primary": True,
                "available_24_7": True,
            },
        ],
        "verified_days_ago": 120,
    },
    {
        "name": "Камара на строителите – Примерно",
        "name_en": "Chamber of Builders – Primerno",
        "kind": "professional_association",
        "registration_number": "114055666",
        "sectors": ["shelter", "transport", "power"],
        "capabilities": "Тежка техника (багери, челни товарачи), оглед на сгради след земетресение.",
        "address": "ул. „Св. Иван Рилски“ 8, гр. Примерно",
        "service_area": "Община Примерно",
        "contacts": [
            {"full_name": "инж. Стефан Колев", "role": "Председател", "phone": "+359 878 400 501", "is_primary": True},
        ],
        "verified_days_ago": None,
    },
    {
        "name": "Читалище „Просвета – 1905“",
        "kind": "ngo",
        "registration_number": "204801339",
        "sectors": ["information", "shelter"],
        "capabilities": "Зала за 150 души като пункт за информация и временен подслон.",
        "address": "пл. „Кракра“ 1, гр. Примерно",
        "service_area": "кв. „Изток“",
        "contacts": [
            {"full_name": "Радка Илиева", "role": "Секретар", "phone": "+359 76 600 404", "is_primary": True},
        ],
        "verified_days_ago": 200,
    },
    {
        "name": "„Транс Логистик Примерно“ ООД",
        "name_en": "Trans Logistic Primerno Ltd",
        "kind": "business",
        "registration_number": "175041154",
        "sectors": ["transport", "fuel"],
        "capabilities": "12 товарни автомобила, склад 2 000 м², гориво за собствен автопарк.",
        "address": "ул. „Индустриална“ 45, гр. Примерно",
        "service_area": "България",
        "contacts": [
            {
                "full_name": "Васил Тодоров",
                "role": "Оперативен директор",
                "phone": "+359 898 500 601",
                "email": "ops@translogistic.example",
                "is_primary": True,
                "available_24_7": True,
            },
        ],
        "verified_days_ago": None,
    },
    {
        "name": "Доброволно формирование – Община Примерно",
        "kind": "volunteer_group",
        "sectors": ["volunteers", "communications"],
        "capabilities": "25 доброволци по Закона за защита при бедствия; радиостанции; помпи за отводняване.",
        "address": "ул. „Търговска“ 1, гр. Примерно",
        "service_area": "Община Примерно",
        "contacts": [
            {
                "full_name": "Тодор Ангелов",
                "role": "Ръководител",
                "phone": "+359 877 600 701",
                "is_primary": True,
                "available_24_7": True,
            },
        ],
        "verified_days_ago": 15,
    },
    {
        "name": "Радио „Примерно FM“",
        "name_en": "Radio Primerno FM",
        "kind": "media",
        "registration_number": "202123459",
        "sectors": ["information", "communications"],
        "capabilities": "Ефирно време за официални съобщения, денонощно.",
        "address": "ул. „Радомир“ 20, гр. Примерно",
        "service_area": "Община Примерно",
        "contacts": [
            {
                "full_name": "Калина Янева",
                "role": "Главен редактор",
                "phone": "+359 76 600 505",
                "email": "news@primerno-fm.example",
                "is_primary": True,
            },
        ],
        "verified_days_ago": None,
    },
]


def is_empty(*, session: Session) -> bool:
    """Whether the database has no user accounts yet (the first start)."""
    return session.exec(select(User.id).limit(1)).first() is None


def load(*, session: Session) -> None:
    """Creates the demo logins and the demo partner registry."""
    actor = "demo-data"
    for email, name, roles in DEMO_USERS:
        users.create(
            session=session,
            actor=actor,
            data=UserCreate(email=email, full_name=name, password=DEMO_PASSWORD, roles=roles),
        )
    coordinator = users.get_by_email(session=session, email=DEMO_USERS[1][0])
    first = None
    for entry in ORGANISATIONS:
        fields = {k: v for k, v in entry.items() if k not in ("contacts", "verified_days_ago")}
        org = partners.create(
            session=session, actor=coordinator, data=OrganisationCreate(**fields), allow_duplicate=True
        )
        first = first or org
        for contact in entry["contacts"]:
            partners.add_contact(session=session, actor=coordinator, org=org, data=ContactCreate(**contact))
        if entry["verified_days_ago"] is not None:
            partners.verify(session=session, actor=coordinator, org=org)
            org.verified_at = utcnow() - timedelta(days=entry["verified_days_ago"])
            session.add(org)
            session.commit()
    users.create(
        session=session,
        actor=coordinator,
        data=UserCreate(
            email=PARTNER_LOGIN,
            full_name="Иван Стоянов",
            password=DEMO_PASSWORD,
            roles=[Role.partner],
            organisation_id=first.id,
        ),
    )
    _load_emergency(session, coordinator)
    _load_memoranda(session, coordinator)
    _load_public_updates(session)


FLOOD_NEEDS = [
    # item, sector, unit, quantity, priority, deliver to, hours until needed
    ("Бутилирана вода", "water", "l", 1200, "critical", "Училище „Христо Ботев“ (временен подслон)", 18),
    ("Одеяла", "shelter", "pcs", 300, "critical", "Училище „Христо Ботев“ (временен подслон)", 12),
    ("Пясъчни чували", "other", "pcs", 2000, "high", "Дига при моста на ул. „Речна“", 6),
    ("Хранителни пакети", "food", "box", 150, "high", "Читалище „Просвета – 1905“", 24),
    (
        "Доброволци за пълнене на чували",
        "volunteers",
        "person_hours",
        240,
        "normal",
        "Дига при моста на ул. „Речна“",
        8,
    ),
    ("Бус за превоз на хора", "transport", "vehicle_days", 6, "normal", "Кметство – кв. „Изток“", 36),
    ("Дизелово гориво за помпи", "fuel", "l", 800, "low", "Помпена станция „Изток“", 48),
]


def _load_emergency(session: Session, coordinator: User) -> None:
    """An active flood with needs in every state of coverage, pledges, a partial receipt and an offer."""
    from service.emergencies import service as logistics
    from service.emergencies.models import (
        AcceptBody,
        EmergencyCreate,
        NeedCreate,
        OfferCreate,
        PledgeCreate,
        ReceiptCreate,
    )
    from service.partners.models import Organisation

    flood = logistics.declare(
        session=session,
        actor=coordinator,
        data=EmergencyCreate(
            title="Наводнение в кв. „Изток“",
            kind="flood",
            area="гр. Примерно, кв. „Изток“ и поречието на р. Струма",
            severity="severe",
            description="Бедствено положение, обявено със заповед на кмета. Евакуирани 180 жители.",
        ),
    )
    now = utcnow()
    needs = [
        logistics.add_need(
            session=session,
            actor=coordinator,
            emergency=flood,
            data=NeedCreate(
                item_name=item,
                sector=sector,
                unit=unit,
                quantity=quantity,
                priority=priority,
                deliver_to=place,
                needed_by=now + timedelta(hours=hours),
            ),
            open_now=True,
        )
        for item, sector, unit, quantity, priority, place, hours in FLOOD_NEEDS
    ]
    orgs = {o.registration_number: o for o in session.exec(select(Organisation))}
    water, volunteers, logistic = orgs["113003225"], orgs["201004516"], orgs["175041154"]

    def pledge(need, org, quantity, hours):
        return logistics.create_pledge(
            session=session, actor=coordinator, need_id=need.id, organisation=org,
            data=PledgeCreate(quantity=quantity, deliver_by=now + timedelta(hours=hours)),
        )  # fmt: skip

    water_pledge = pledge(needs[0], water, 1000, 12)
    logistics.accept(session=session, actor=coordinator, pledge=water_pledge, data=AcceptBody(accepted_quantity=800))
    logistics.dispatch(session=session, actor=coordinator, pledge=water_pledge)
    logistics.record_receipt(
        session=session, actor=coordinator, pledge=water_pledge,
        data=ReceiptCreate(quantity=400, received_by="Директор на училището", note="Първи курс"),
    )  # fmt: skip
    blankets = pledge(needs[1], volunteers, 120, 10)
    logistics.accept(session=session, actor=coordinator, pledge=blankets, data=AcceptBody())
    pledge(needs[3], volunteers, 60, 20)
    pledge(needs[4], volunteers, 240, 6)
    pledge(needs[5], logistic, 4, 30)
    logistics.create_offer(
        session=session, actor=coordinator, organisation=logistic,
        data=OfferCreate(item_name="Палети с минерална вода", sector="water", unit="l", quantity=500,
                         note="Излишък от склада, на разположение веднага"),
    )  # fmt: skip


def _load_memoranda(session: Session, coordinator: User) -> None:
    """A logistics memorandum in force (signed by all, its final PDF made), a public-awareness one awaiting the
    demo partner login's signature, and a draft fundraising campaign; their PDFs go to the memoranda archive."""
    import json

    from service import pdf
    from service.memoranda import documents
    from service.memoranda import service as memoranda
    from service.memoranda.models import Memorandum, MemorandumCreate, SignatureMethod
    from service.partners.models import Organisation

    orgs = {o.registration_number: o for o in session.exec(select(Organisation))}
    today = memoranda.today()

    def draft(kind: str, partners: list[str], starts_in: int, days: int, deadline_in: int, **variables) -> Memorandum:
        values = json.loads(documents.variables_json(documents.sample_variables(kind, "bg")))
        data = MemorandumCreate(
            template=kind,
            language="bg",
            partner_ids=[orgs[number].id for number in partners],
            variables={**values, **{name: str(value) for name, value in variables.items()}},
            signing_deadline=today + timedelta(days=deadline_in),
            valid_from=today + timedelta(days=starts_in),
            valid_until=today + timedelta(days=starts_in + days),
        )
        return memoranda.create(session=session, actor=coordinator, data=data)

    def issue(memorandum: Memorandum) -> Memorandum:
        rendered = memoranda.render(session=session, memorandum=memorandum, draft=False)
        return memoranda.issue(
            session=session, actor=coordinator, memorandum_id=memorandum.id, pdf=rendered,
            rendered_from=memorandum.updated_at,
        )  # fmt: skip

    try:
        # Water and transport in disasters, with the mineral water company and the haulier: in force.
        logistics = issue(draft("logistics_support", ["113003225", "175041154"], 0, 730, 14))
        signers = {
            orgs["113003225"].id: ("Николай Георгиев", "Управител"),
            orgs["175041154"].id: ("Васил Тодоров", "Оперативен директор"),
            None: (settings.municipality_representative, settings.municipality_representative_title),
        }
        # The partners signed on paper (they have no logins here): staff record each with the scanned copy.
        scanned = pdf.render_pdf(
            "<p>Сканирано копие на подписания меморандум (демонстрационни данни).</p>", pdf_variant=None
        )
        for party in memoranda.parties_of(session=session, memorandum=logistics):
            name, title = signers[party.organisation_id]
            on_paper = {} if party.organisation_id is None else {"method": SignatureMethod.upload, "scan": scanned}
            logistics = memoranda.sign(
                session=session, actor=coordinator, memorandum=logistics, organisation_id=party.organisation_id,
                signer_name=name, signer_title=title, **on_paper,
            )  # fmt: skip
        final = memoranda.final_pdf(session=session, memorandum=logistics)
        memoranda.record_final(session=session, memorandum_id=logistics.id, pdf=final)

        # "Ready for floods" with the volunteers (the demo partner login's organisation) and the radio: to sign.
        start = today + timedelta(days=14)
        issue(
            draft(
                "public_awareness", ["201004516", "202123459"], 14, 200, 10,
                campaign_start=start, campaign_end=start + timedelta(days=200),
            )
        )  # fmt: skip

        # The donation campaign after the flood, with the Red Cross and the volunteers: still a draft.
        start = today + timedelta(days=7)
        draft(
            "fundraising_campaign", ["203987129", "201004516"], 7, 365, 21,
            campaign_start=start, campaign_end=start + timedelta(days=100),
        )  # fmt: skip
    finally:
        pdf.shutdown()  # the render workers this command started


def _load_public_updates(session: Session) -> None:
    """Published updates (one corrected), a fact-check of a rumour, a rumour under investigation and an
    update waiting for review: written by one officer, approved by the other."""
    from service.bulletins import service as bulletins
    from service.bulletins.models import (
        Bulletin,
        BulletinCreate,
        CorrectionCreate,
        RumourCreate,
        RumourUpdate,
        VerdictBody,
    )
    from service.emergencies.models import Emergency

    author = users.get_by_email(session=session, email=DEMO_USERS[2][0])
    reviewer = users.get_by_email(session=session, email=DEMO_USERS[3][0])
    flood = session.exec(select(Emergency).limit(1)).first()
    now = utcnow()

    def publish(**fields: object) -> Bulletin:
        bulletin = bulletins.create(session=session, actor=author, data=BulletinCreate(**fields))
        bulletins.submit(session=session, actor=author, bulletin=bulletin)
        return bulletins.approve(session=session, actor=reviewer, bulletin=bulletin)

    publish(
        title="Спиране на водата в кв. „Изток“ до 18:00 ч.",
        body="Поради наводнението помпената станция „Изток“ е спряна. **Не пийте вода от чешмите** в квартала, "
        "докато не бъде обявено, че е безопасна.\n\nПитейна вода се раздава безплатно в училище „Христо Ботев“.",
        emergency_id=flood.id if flood else None, category="alert", urgency="Immediate", severity="Severe",
        certainty="Observed", cap_category="Infra", response_type="Avoid", area_desc="кв. „Изток“, гр. Примерно",
        polygon="42.6051,23.0302 42.6102,23.0411 42.6033,23.0497 42.5989,23.0375 42.6051,23.0302",
        effective=now, expires=now + timedelta(hours=12),
        instruction="Използвайте само бутилирана вода за пиене и готвене. Пазете се от заливните зони.",
    )  # fmt: skip
    points = publish(
        title="Пунктове за раздаване на питейна вода",
        body="Питейна вода се раздава:\n\n- училище „Христо Ботев“, ул. „Речна“ 4 — от 8:00 до 20:00 ч.;\n"
        "- читалище „Просвета – 1905“ — от 9:00 до 18:00 ч.\n\nНосете собствени съдове.",
        emergency_id=flood.id if flood else None, category="advisory", urgency="Expected", severity="Moderate",
        certainty="Observed", cap_category="Health", response_type="Prepare", area_desc="гр. Примерно",
    )  # fmt: skip
    bulletins.correct(
        session=session, actor=reviewer, bulletin=points,
        data=CorrectionCreate(
            body="Питейна вода се раздава:\n\n- училище „Христо Ботев“, ул. „Речна“ 4 — от 7:00 до 21:00 ч.;\n"
            "- читалище „Просвета – 1905“ — от 9:00 до 18:00 ч.\n\nНосете собствени съдове.",
            reason="Удължено работно време на пункта в училището.",
        ),
    )  # fmt: skip
    publish(
        title="Drinking water distribution points",
        body="Free drinking water is handed out at Hristo Botev School (4 Rechna St., 7:00–21:00) and at the "
        "Prosveta 1905 community centre (9:00–18:00). Please bring your own containers.",
        language="en", emergency_id=flood.id if flood else None, category="advisory", urgency="Expected",
        severity="Moderate", certainty="Observed", cap_category="Health", response_type="Prepare",
        area_desc="Primerno",
    )  # fmt: skip

    rumour = bulletins.log_rumour(
        session=session, actor=author,
        data=RumourCreate(
            wording="Водата от чешмите в целия град е отровена, не я ползвайте дори за миене!",
            summary="Водата в целия град е отровена", channel="Facebook група „Примерно днес“", report_count=14,
            risk="high", first_seen=now - timedelta(hours=5),
        ),
    )  # fmt: skip
    rumour = bulletins.record_verdict(
        session=session, actor=author, rumour=rumour,
        data=VerdictBody(
            verdict="false", evidence="Лабораторни проби от ВиК „Примерно“ от 6 часа сутринта: водата извън "
            "кв. „Изток“ отговаря на нормите.",
            response="Водата извън кв. „Изток“ е **годна за пиене** според пробите на ВиК от тази сутрин. "
            "Само в кв. „Изток“ не пийте вода от чешмите, докато не бъде обявено друго.",
        ),
    )  # fmt: skip
    check = bulletins.draft_fact_check(session=session, actor=author, rumour=rumour, area_desc="гр. Примерно")
    bulletins.submit(session=session, actor=author, bulletin=check)
    bulletins.approve(session=session, actor=reviewer, bulletin=check)

    investigated = bulletins.log_rumour(
        session=session, actor=reviewer,
        data=RumourCreate(
            wording="Язовирът над града ще бъде изпуснат тази нощ", channel="Viber група на квартала", risk="high",
        ),
    )  # fmt: skip
    bulletins.update_rumour(
        session=session, actor=reviewer, rumour=investigated, data=RumourUpdate(status="investigating")
    )
    waiting = bulletins.create(
        session=session, actor=author,
        data=BulletinCreate(
            title="Временно затворени улици", body="Затворени са ул. „Речна“ и мостът на ул. „Дунав“.",
            category="service_status", urgency="Expected", severity="Minor", certainty="Observed",
            cap_category="Transport", response_type="Avoid", area_desc="кв. „Изток“",
        ),
    )  # fmt: skip
    bulletins.submit(session=session, actor=author, bulletin=waiting)


def banner(*, host: str, port: int) -> str:
    """The first lines `accord serve` prints: where to log in, and the demo logins."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
    lines = [
        f"Crisis Accord for {settings.municipality_name}: http://{shown}:{port}/login  (API docs: http://{shown}:{port}/docs)",
        f"Demo logins (password {DEMO_PASSWORD!r} for each, if the demo data was loaded):",
    ]
    for email, _name, roles in DEMO_USERS:
        lines.append(f"  {roles[0].value:<15} {email}")
    lines.append(f"  {'partner':<15} {PARTNER_LOGIN}")
    lines.append(f"The public site: http://{shown}:{port}/")
    return "\n".join(lines)
