"""The memorandum documents: every kind in both languages rendered to real PDF/A files and read back with pypdf,
the declarations checked against the templates, and the filled variables validated."""

import json
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from decimal import Decimal
from io import BytesIO
from pathlib import Path

import pytest
from pypdf import PdfReader

from service import pdf
from service.memoranda import documents
from service.memoranda.documents import KINDS, LANGUAGES
from service.partners.registration import is_valid_registration_number

CASES = [(kind, language) for kind in KINDS for language in LANGUAGES]
XSS = "<script>alert(1)</script><b>bold</b>"


def flat(text: str) -> str:
    """Text with every run of whitespace made one space (pypdf breaks and pads justified lines)."""
    return " ".join(text.split())


class Rendered:
    def __init__(self, content: bytes) -> None:
        self.content = content
        self.reader = PdfReader(BytesIO(content))
        self.pages = [page.extract_text() for page in self.reader.pages]
        self.text = flat(" ".join(self.pages))


@pytest.fixture(scope="module")
def rendered() -> dict[tuple[str, str, bool], Rendered]:
    """Every kind, language and draft state, rendered once for the module (two render workers in parallel)."""
    pdf.warm_up()

    def render(case: tuple[str, str, bool]) -> Rendered:
        kind, language, draft = case
        context = documents.sample_context(kind, language, draft=draft)
        variables = documents.variables_json(documents.sample_variables(kind, language))
        return Rendered(documents.render_pdf(kind, language, context=context, variables_json=variables))

    cases = [(kind, language, draft) for kind, language in CASES for draft in (False, True)]
    with ThreadPoolExecutor(max_workers=2) as executor:
        return dict(zip(cases, executor.map(render, cases), strict=True))


@pytest.mark.parametrize(("kind", "language"), CASES)
def test_document_names_every_party_and_the_verification_code(rendered, kind, language):
    document = rendered[(kind, language, False)]
    context = documents.sample_context(kind, language)

    assert flat(context["municipality"]["name"]) in document.text
    for party in context["parties"]:
        assert flat(party["name"]) in document.text  # Cyrillic, in the English documents too
        assert party["registration_number"] in document.text
    assert re.search(r"[А-Яа-я]{4}", document.text)
    for page in document.pages:  # the footer repeats it on every page
        assert documents.SAMPLE_CODE in flat(page)


@pytest.mark.parametrize(("kind", "language"), CASES)
def test_document_numbers_its_pages(rendered, kind, language):
    document = rendered[(kind, language, False)]
    total = len(document.pages)
    assert total >= 2
    for number, page in enumerate(document.pages, start=1):
        expected = f"стр. {number} от {total}" if language == "bg" else f"Page {number} of {total}"
        assert expected in flat(page)


@pytest.mark.parametrize(("kind", "language"), CASES)
def test_document_is_pdf_a_3b_with_embedded_fonts(rendered, kind, language):
    reader = rendered[(kind, language, False)].reader
    catalog = reader.trailer["/Root"]
    xmp = catalog["/Metadata"].get_object().get_data().decode()

    assert re.search(r'pdfaid:part(="|>)3', xmp)
    assert re.search(r'pdfaid:conformance(="|>)B', xmp)
    assert catalog["/OutputIntents"][0].get_object()["/S"] == "/GTS_PDFA1"
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            if "/DescendantFonts" in font:
                font = font["/DescendantFonts"][0].get_object()
            descriptor = font["/FontDescriptor"].get_object()
            assert {"/FontFile", "/FontFile2", "/FontFile3"} & set(descriptor), font["/BaseFont"]


@pytest.mark.parametrize(("kind", "language"), CASES)
def test_document_carries_its_variables_as_json(rendered, kind, language):
    reader = rendered[(kind, language, False)].reader

    assert list(reader.attachments) == ["variables.json"]
    attached = json.loads(reader.attachments["variables.json"][0])
    assert attached == json.loads(documents.variables_json(documents.sample_variables(kind, language)))
    (associated,) = reader.trailer["/Root"]["/AF"]  # PDF/A-3: the file is associated with the document once
    assert associated.get_object()["/AFRelationship"] == "/Data"


@pytest.mark.parametrize(("kind", "language"), CASES)
def test_draft_is_watermarked_on_every_page_and_issued_is_not(rendered, kind, language):
    word = "ПРОЕКТ" if language == "bg" else "DRAFT"
    draft, issued = rendered[(kind, language, True)], rendered[(kind, language, False)]

    assert all(word in page for page in draft.pages)
    assert word not in issued.text


@pytest.mark.parametrize("language", LANGUAGES)
def test_dates_read_as_in_a_memorandum(rendered, language):
    text = rendered[("logistics_support", language, False)].text
    if language == "bg":
        assert "02.03.2026 г." in text and "31.12.2027 г." in text
    else:
        assert "2 March 2026" in text and "31 December 2027" in text


def test_shipped_declarations_match_their_templates():
    assert documents.check_declarations() == []


def test_a_broken_template_directory_is_reported_both_ways(tmp_path):
    shutil.copytree(documents.TEMPLATE_DIR, tmp_path, dirs_exist_ok=True)
    used_not_declared = tmp_path / "logistics_support.bg.html"
    used_not_declared.write_text(
        used_not_declared.read_text().replace("{% block subject %}", "{% block subject %}{{ loading_bays }}")
    )
    declared_not_used = tmp_path / "public_awareness.toml"
    declared_not_used.write_text(
        declared_not_used.read_text()
        + '\n[[variables]]\nname = "mascot"\ntype = "text"\nrequired = false\n'
        + 'label_bg = "Талисман"\nlabel_en = "Mascot"\n'
    )
    (tmp_path / "fundraising_campaign.en.html").unlink()
    malformed = tmp_path / "public_consultation.toml"
    malformed.write_text(malformed.read_text().replace('type = "multiline"', 'type = "essay"', 1))

    problems = documents.check_declarations(tmp_path)

    assert "logistics_support.bg.html uses `loading_bays`, which logistics_support.toml does not declare" in problems
    assert "public_awareness.toml declares `mascot`, which public_awareness.bg.html does not use" in problems
    assert "public_awareness.toml declares `mascot`, which public_awareness.en.html does not use" in problems
    assert any(p.startswith("fundraising_campaign.en.html: TemplateNotFound") for p in problems)
    assert any(p.startswith("public_consultation.toml:") and "type must be one of" in p for p in problems)
    assert len(problems) == 5, problems
    assert documents.check_declarations() == []  # the shipped directory is untouched


def test_template_version_follows_the_document_its_base_and_the_stylesheet(tmp_path):
    shutil.copytree(documents.TEMPLATE_DIR, tmp_path, dirs_exist_ok=True)
    versions = {case: documents.template_version(*case) for case in CASES}
    assert all(re.fullmatch(r"[0-9a-f]{64}", version) for version in versions.values())
    assert len(set(versions.values())) == len(CASES)
    assert (
        documents.template_version("logistics_support", "bg", template_dir=tmp_path)
        == versions[("logistics_support", "bg")]
    )

    seen = {versions[("logistics_support", "bg")]}
    for name in ("logistics_support.bg.html", "_base.html", "memorandum.css"):
        path = tmp_path / name
        path.write_text(path.read_text() + "\n")
        version = documents.template_version("logistics_support", "bg", template_dir=tmp_path)
        assert version not in seen, name
        seen.add(version)
    (tmp_path / "logistics_support.toml").write_text((tmp_path / "logistics_support.toml").read_text() + "\n")
    assert documents.template_version("logistics_support", "bg", template_dir=tmp_path) in seen


def test_template_source_is_the_document():
    source = documents.template_source("public_consultation", "en")
    assert source.startswith('{% extends "_base.html" %}')
    assert "Normative Acts Act" in source


def test_every_kind_declares_labelled_variables():
    for kind in KINDS:
        specs = documents.declaration(kind)
        names = [spec.name for spec in specs]
        assert {"place_of_signing", "municipality_contact", "termination_notice_days"} <= set(names)
        for spec in specs:
            assert spec.label("bg") and spec.label("en") and spec.label("bg") != spec.label("en")
            assert not (documents.SYSTEM_NAMES & {spec.name})
            if spec.type == "choice":
                assert spec.options and all(option.label("bg") and option.label("en") for option in spec.options)


# Validating variables.


def test_good_input_comes_back_typed():
    values = {
        "place_of_signing": "  гр. Примерно ",
        "municipality_contact": "Георги Иванов",
        "termination_notice_days": "45",
        "campaign_purpose": "Ремонт на домове\r\nОтопление  ",
        "target_amount": "12 500,50",
        "campaign_start": "2026-03-20",
        "campaign_end": "30.06.2026",
        "account_holder": "Български червен кръст",
        "bank_name": "Примерна банка",
        "iban": "BG80 BNBG 9661 1020 3456 78",
        "payment_reference": "Дарение",
        "reporting_frequency": "weekly",
        "report_url": "www.primerno.bg/darenia",
    }

    clean, errors = documents.validate_variables("fundraising_campaign", values)

    assert errors == {}
    assert clean["place_of_signing"] == "гр. Примерно"
    assert clean["termination_notice_days"] == 45
    assert clean["campaign_purpose"] == "Ремонт на домове\nОтопление"
    assert clean["target_amount"] == Decimal("12500.50")
    assert clean["campaign_start"] == date(2026, 3, 20)
    assert clean["campaign_end"] == date(2026, 6, 30)
    assert clean["bic"] is None  # optional, left out
    assert clean["donor_names_published"] == "with_consent"  # the declared default


def test_typed_values_pass_as_they_are():
    for kind, language in CASES:
        values = documents.sample_variables(kind, language)
        assert documents.validate_variables(kind, values) == (values, {})


def test_missing_required_values_are_named():
    clean, errors = documents.validate_variables("logistics_support", {"place_of_signing": "   "})

    assert errors == {
        "place_of_signing": documents.REQUIRED,
        "municipality_contact": documents.REQUIRED,
        "goods_and_services": documents.REQUIRED,
        "delivery_points": documents.REQUIRED,
    }
    assert clean["response_hours"] == 6 and clean["termination_notice_days"] == 30  # defaults fill the rest
    assert clean["storage_facilities"] is None


def test_unknown_names_are_errors():
    values = {**documents.sample_variables("public_awareness", "bg"), "budget": "1000", "memorandum": "x"}
    _clean, errors = documents.validate_variables("public_awareness", values)
    assert errors == {"budget": documents.UNKNOWN, "memorandum": documents.UNKNOWN}


@pytest.mark.parametrize(
    ("kind", "name", "value", "message"),
    [
        ("logistics_support", "response_hours", "six", documents.NOT_INTEGER),
        ("logistics_support", "response_hours", 2.5, documents.NOT_INTEGER),
        ("logistics_support", "response_hours", True, documents.NOT_INTEGER),
        ("logistics_support", "response_hours", 0, documents.TOO_SMALL),
        ("logistics_support", "response_hours", "500", documents.TOO_LARGE),
        ("logistics_support", "cost_arrangement", "barter", documents.NOT_OPTION),
        ("logistics_support", "place_of_signing", "гр. Примерно\nи другаде", documents.ONE_LINE),
        ("logistics_support", "place_of_signing", "х" * 501, documents.TOO_LONG),
        ("logistics_support", "place_of_signing", 42, documents.NOT_TEXT),
        ("fundraising_campaign", "target_amount", "много", documents.NOT_DECIMAL),
        ("fundraising_campaign", "target_amount", "NaN", documents.NOT_DECIMAL),
        ("fundraising_campaign", "target_amount", Decimal("Infinity"), documents.NOT_DECIMAL),
        ("fundraising_campaign", "target_amount", "0", documents.TOO_SMALL),
        ("fundraising_campaign", "campaign_start", "31.02.2026", documents.NOT_DATE),
        ("fundraising_campaign", "campaign_start", "next week", documents.NOT_DATE),
        ("fundraising_campaign", "campaign_end", "2026-03-01", documents.TOO_EARLY),
        ("fundraising_campaign", "iban", "моята сметка", documents.BAD_FORMAT),
        ("countering_disinformation", "methodology", "gut feeling", documents.NOT_OPTION),
    ],
)
def test_wrong_types_are_named(kind, name, value, message):
    language = "bg"
    _clean, errors = documents.validate_variables(kind, {**documents.sample_variables(kind, language), name: value})
    assert errors == {name: message}


def test_email_variables_are_checked(tmp_path):
    shutil.copytree(documents.TEMPLATE_DIR, tmp_path, dirs_exist_ok=True)
    toml = tmp_path / "public_consultation.toml"
    toml.write_text(
        toml.read_text()
        + '\n[[variables]]\nname = "reply_to"\ntype = "email"\nrequired = true\n'
        + 'label_bg = "Адрес"\nlabel_en = "Address"\n'
    )
    base = documents.sample_variables("public_consultation", "bg")

    _clean, errors = documents.validate_variables(
        "public_consultation", {**base, "reply_to": "не е адрес"}, template_dir=tmp_path
    )
    assert errors == {"reply_to": documents.NOT_EMAIL}
    clean, errors = documents.validate_variables(
        "public_consultation", {**base, "reply_to": " konsultacii@Primerno.example "}, template_dir=tmp_path
    )
    assert errors == {} and clean["reply_to"] == "konsultacii@primerno.example"


def test_a_malformed_declaration_says_what_is_wrong(tmp_path):
    shutil.copytree(documents.TEMPLATE_DIR, tmp_path, dirs_exist_ok=True)
    toml = tmp_path / "logistics_support.toml"
    toml.write_text(toml.read_text().replace("default = 6\n", 'default = "soon"\n'))
    with pytest.raises(ValueError, match=r"response_hours.*default is invalid"):
        documents.declaration("logistics_support", template_dir=tmp_path)


# Rendering HTML.


def test_a_missing_variable_is_a_422_naming_it():
    context = documents.sample_context("logistics_support", "bg")
    del context["delivery_points"]

    with pytest.raises(documents.MissingVariable) as caught:
        documents.render_html("logistics_support", "bg", context=context)

    assert caught.value.status_code == 422
    assert caught.value.field == "delivery_points"
    assert "delivery_points" in caught.value.text()


def test_a_missing_nested_value_is_named_too():
    context = documents.sample_context("public_consultation", "en")
    del context["parties"][0]["email"]

    with pytest.raises(documents.MissingVariable) as caught:
        documents.render_html("public_consultation", "en", context=context)

    assert caught.value.field == "email"


def test_unknown_kind_or_language_is_404():
    with pytest.raises(documents.UnknownTemplate) as caught:
        documents.render_html("tea_party", "bg", context={})
    assert caught.value.status_code == 404
    with pytest.raises(documents.UnknownTemplate):
        documents.template_version("logistics_support", "de")


def test_markup_in_a_value_is_text_in_the_html_and_the_pdf():
    context = {**documents.sample_context("logistics_support", "en"), "transport_capacity": XSS}

    html = documents.render_html("logistics_support", "en", context=context)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;" in html
    assert "<script>" not in html and "<b>bold</b>" not in html

    variables = documents.variables_json(
        {**documents.sample_variables("logistics_support", "en"), "transport_capacity": XSS}
    )
    text = Rendered(documents.render_pdf("logistics_support", "en", context=context, variables_json=variables)).text
    assert XSS in text.replace(" ", "")


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_draft_without_code_or_dates_leaves_blanks(language):
    context = documents.sample_context("fundraising_campaign", language, draft=True)
    context["memorandum"].update(
        code=None, verify_url=None, qr_svg_data_uri=None, valid_from=None, valid_until=None, signing_deadline=None
    )

    html = documents.render_html("fundraising_campaign", language, context=context)

    assert "None" not in html
    signature_dates = 1 + len(context["parties"])
    assert html.count(documents.BLANK_DATE) == 4 + signature_dates  # issued, valid from and until, signing deadline
    assert ("кодът за проверка се дава при издаването" if language == "bg" else "verification code is given") in html


def test_multiline_values_become_lists_and_keep_their_escaping():
    context = {**documents.sample_context("public_awareness", "bg"), "key_messages": "Първо <i>\nВторо & трето"}
    html = documents.render_html("public_awareness", "bg", context=context)
    assert "<li>Първо &lt;i&gt;</li>" in html and "<li>Второ &amp; трето</li>" in html


def test_formats():
    assert documents.format_long_date(date(2027, 12, 31), "bg") == "31.12.2027 г."
    assert documents.format_long_date(date(2027, 12, 31), "en") == "31 December 2027"
    assert documents.format_money(Decimal("1250"), "bg") == "1\xa0250,00\xa0€"
    assert documents.format_money(Decimal("1250"), "en") == "€1,250.00"


def test_qr_code_is_an_svg_data_uri():
    uri = documents.qr_data_uri("http://127.0.0.1:8000/verify/K7Q2M4XHNRBT3WZP")
    assert uri.startswith("data:image/svg+xml")
    assert "svg" in uri


def test_sample_data_is_realistic():
    for kind, language in CASES:
        context = documents.sample_context(kind, language)
        assert set(documents.SYSTEM_NAMES) <= set(context)
        assert set(context["memorandum"]) == set(documents.MEMORANDUM_FIELDS)
        assert set(context["municipality"]) == set(documents.MUNICIPALITY_FIELDS)
        for party in context["parties"]:
            assert set(party) == set(documents.PARTY_FIELDS)
            assert is_valid_registration_number(party["registration_number"])
            assert re.search(r"[А-Яа-я]", party["name"])
    assert is_valid_registration_number(documents.municipality_context("bg")["eik"])


def test_configured_coat_of_arms_is_inlined(tmp_path, monkeypatch):
    svg = tmp_path / "герб.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    monkeypatch.setattr(documents.settings, "municipality_coat_of_arms", svg)
    assert documents.coat_of_arms_url().startswith("data:image/svg+xml;base64,")
    monkeypatch.setattr(documents.settings, "municipality_coat_of_arms", None)
    assert documents.coat_of_arms_url() == "memoranda/coat_of_arms.svg"
    assert Path(documents.TEMPLATE_DIR.parent, documents.coat_of_arms_url()).is_file()
