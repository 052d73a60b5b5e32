"""TemplateStore on disk, the shipped mention templates, and the data the worker gives them."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

import workers
from workers.errors import TemplateError, TemplateSyntaxError
from workers.rendering import TemplateStore, default_templates_dir, mention_template_data
from workers.rendering.store import PARTS

EXAMPLE = Path(workers.__file__).parent.parent / "examples" / "mention_email.json"
LANGUAGES = ("handlebars", "mailchimp")


def mention(i: int, **overrides: Any) -> dict[str, Any]:
    base = {
        "tracking_unit_name": "Acme Watch",
        "program_name": f"Show {i} <Live & Loud>",
        "program_image": f"https://img.example.com/{i}.jpg",
        "mention_date": 1764062400 + i * 60,
        "snippets": f'"Acme" said <b>{i}</b> *|NOT_A_TAG|* {{{{nope}}}}',
        "invite_link": f"https://app.example.com/m/{i}?a=1&b=2",
        "via": "Radio",
        "logouri": "https://cdn.example.com/logo.png",
        "creator_email": "analyst@example.com",
        "unsubscribe_hash": "h1",
        "unsubscribe_link": "https://app.example.com/unsub/h1",
    }
    base.update(overrides)
    return base


def place_holders(count: int, **top: Any) -> dict[str, Any]:
    return {
        "tracking_unit_name": "Acme Watch",
        "via": "Radio",
        "logouri": "https://cdn.example.com/logo.png",
        "mentions": [mention(i) for i in range(count)],
        **top,
    }


@pytest.fixture(scope="module")
def store() -> TemplateStore:
    return TemplateStore(default_templates_dir())


def test_default_dir_is_the_package_folder_and_the_top_level_one_links_to_it() -> None:
    package = Path(workers.__file__).parent
    assert default_templates_dir() == package / "templates"
    # One copy: the folder people edit at the top of the checkout is the one the package ships.
    top = package.parent / "templates"
    assert top.is_symlink() and top.resolve() == (package / "templates").resolve()


def test_shipped_templates(store: TemplateStore) -> None:
    assert store.names() >= {"mention-notification", "mention-notification-bulk"}
    report = store.check()
    for name in ("mention-notification", "mention-notification-bulk"):
        assert sorted(report[name]) == sorted(f"{part}.{ext}" for part in PARTS for ext in ("hbs", "mc"))
    assert "mentions" in report["mention-notification-bulk"]["html.hbs"]
    assert "program_name" in report["mention-notification-bulk"]["html.hbs"]
    assert "mentions_html" in report["mention-notification-bulk"]["html.mc"]
    assert "if" not in report["mention-notification-bulk"]["html.hbs"]


@pytest.mark.parametrize("count", [0, 1, 2, 7])
@pytest.mark.parametrize("name", ["mention-notification", "mention-notification-bulk"])
def test_both_languages_render_the_same_email(store: TemplateStore, name: str, count: int) -> None:
    data = mention_template_data(place_holders(count), from_name="Alerts", service_name="Mentions")
    for part in PARTS:
        assert store.render(name, part, "handlebars", data) == store.render(name, part, "mailchimp", data), (
            part
        )


@pytest.mark.parametrize("language", LANGUAGES)
def test_variations_still_agree(store: TemplateStore, language: str) -> None:
    holders = place_holders(3, logouri="")
    holders["mentions"][1]["program_image"] = ""
    for m in holders["mentions"]:
        m["unsubscribe_link"] = ""
        m["logouri"] = ""
    data = mention_template_data(holders, from_name="", service_name="")
    for name in ("mention-notification", "mention-notification-bulk"):
        for part in PARTS:
            other = "mailchimp" if language == "handlebars" else "handlebars"
            assert store.render(name, part, language, data) == store.render(name, part, other, data)
    html = store.render("mention-notification-bulk", "html", language, data)
    assert "<img" not in html.split("<h1")[0]  # no logo at all
    assert html.count('width="64"') == 2  # the mention without an image has none
    assert "Unsubscribe" not in html


@pytest.mark.parametrize("language", LANGUAGES)
def test_bulk_email_looks_like_a_real_email(store: TemplateStore, language: str) -> None:
    data = mention_template_data(place_holders(2), from_name="Alerts", service_name="Mentions")
    html = store.render("mention-notification-bulk", "html", language, data)
    text = store.render("mention-notification-bulk", "text", language, data)
    subject = store.render("mention-notification-bulk", "subject", language, data)
    assert subject.strip() == "2 new mentions for Acme Watch"
    assert html.startswith("<!DOCTYPE html>")
    assert '<img src="https://cdn.example.com/logo.png"' in html
    assert '<img src="https://img.example.com/1.jpg" alt="Show 1 &lt;Live &amp; Loud&gt;"' in html
    assert "25 Nov 2025, 09:21 UTC" in html and "25 Nov 2025, 09:21 UTC" in text
    assert 'href="https://app.example.com/m/0?a&#x3D;1&amp;b&#x3D;2"' in html
    assert 'href="https://app.example.com/unsub/h1"' in html
    # Hostile snippet text is escaped in HTML and verbatim in text; nothing in it is interpreted.
    assert "&quot;Acme&quot; said &lt;b&gt;0&lt;/b&gt; *|NOT_A_TAG|* {{nope}}" in html
    assert '"Acme" said <b>1</b> *|NOT_A_TAG|* {{nope}}' in text
    assert "Show 0 <Live & Loud>" in text
    assert "Unsubscribe: https://app.example.com/unsub/h1" in text


@pytest.mark.parametrize("language", LANGUAGES)
def test_single_email_from_the_example_event(store: TemplateStore, language: str) -> None:
    event = json.loads(EXAMPLE.read_text(encoding="utf-8"))["data"]
    data = mention_template_data(event["place_holders"], from_name=event["from_name"], service_name="svc")
    subject = store.render(event["template"], "subject", language, data)
    text = store.render(event["template"], "text", language, data)
    assert subject.strip() == "Acme Brand Watch was mentioned on Morning Business Report"
    assert "25 Nov 2025, 09:20 UTC, via Broadcast" in text
    assert "View this mention: https://app.example.com/mentions/4401?invite=1" in text


@pytest.mark.parametrize("language", LANGUAGES)
def test_single_email_without_mentions_has_no_empty_card(store: TemplateStore, language: str) -> None:
    data = mention_template_data(place_holders(0), from_name="", service_name="")
    assert "View this mention" not in store.render("mention-notification", "html", language, data)
    assert "View this mention" not in store.render("mention-notification", "text", language, data)


def test_mention_template_data_fields() -> None:
    holders = place_holders(2)
    holders["mentions"][0]["mention_date"] = "1764062400"  # proto3 JSON int64 arrives as a string
    del holders["mentions"][1]["creator_email"]
    data = mention_template_data(holders, from_name="F", service_name="S")
    first, second = data["mentions"]
    assert first["mention_date"] == 1764062400
    assert first["mention_date_formatted"] == "25 Nov 2025, 09:20 UTC"
    assert first["mention_date_iso"] == "2025-11-25T09:20:00Z"
    assert (first["position"], second["position"]) == (1, 2)
    assert second["creator_email"] == ""
    assert data["mention_count"] == 2 and data["mentions_label"] == "2 new mentions"
    assert data["mention"] is first and data["mention_program_name"] == first["program_name"]
    assert data["unsubscribe_link"] == "https://app.example.com/unsub/h1"
    assert (data["from_name"], data["service_name"]) == ("F", "S")
    one = mention_template_data(place_holders(1), from_name="", service_name="")
    assert one["mentions_label"] == "1 new mention"
    none = mention_template_data({}, from_name="", service_name="")
    assert none["mentions"] == [] and none["mention"] is None and none["mention_program_name"] == ""
    assert none["has_mentions"] is False and data["has_mentions"] is True
    bad = mention_template_data(
        place_holders(1) | {"mentions": [mention(0, mention_date="soon")]}, from_name="", service_name=""
    )
    assert bad["mentions"][0]["mention_date_formatted"] == ""


def write(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_store_escapes_html_part_only_and_shares_partials(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "greet/subject.hbs": "Hi {{name}}",
            "greet/html.hbs": "<p>{{name}}</p>{{> sig}}",
            "greet/text.hbs": "{{name}}\n{{> sig}}",
            "greet/html.mc": "<p>*|NAME|*</p>",
            "partials/sig.hbs": "-- {{team}}",
            "_drafts/html.hbs": "{{",
        },
    )
    store = TemplateStore(tmp_path)
    assert store.names() == frozenset({"greet"})
    data = {"name": "A&B", "team": "<ops>"}
    assert store.render("greet", "subject", "handlebars", data) == "Hi A&B"
    assert store.render("greet", "html", "handlebars", data) == "<p>A&amp;B</p>-- &lt;ops&gt;"
    assert store.render("greet", "text", "handlebars", data) == "A&B\n-- <ops>"
    assert store.render("greet", "html", "mailchimp", data) == "<p>A&amp;B</p>"
    assert store.template("greet", "html", "handlebars") is store.template("greet", "html", "handlebars")
    assert store.check()["partials"] == {"sig.hbs": ["team"]}


def test_store_errors(tmp_path: Path) -> None:
    write(
        tmp_path,
        {"ok/html.hbs": "fine", "broken/html.hbs": "line\n{{#if x}}", "broken/text.mc": "*|END:IF|*"},
    )
    store = TemplateStore(tmp_path)
    with pytest.raises(TemplateError, match="no template named 'missing'"):
        store.render("missing", "html", "handlebars", {})
    with pytest.raises(TemplateError, match="has no text part"):
        store.render("ok", "text", "handlebars", {})
    with pytest.raises(TemplateError, match="unknown template part"):
        store.render("ok", "body", "handlebars", {})  # type: ignore[arg-type]
    with pytest.raises(TemplateSyntaxError) as caught:
        store.check()
    assert caught.value.template == "broken/html.hbs" and caught.value.line == 2
    assert [error.template for error in store.errors()] == ["broken/html.hbs", "broken/text.mc"]


_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)


class _Page(HTMLParser):
    """What a reader sees of an HTML email: visible text (no head, no hidden preheader) and images."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self._hidden: list[str] = []  # stack of open elements that hide their content

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "img":
            self.images.append(attributes)
        if tag in _VOID:
            return
        style = (attributes.get("style") or "").replace(" ", "")
        if tag in {"head", "style", "title"} or "display:none" in style or self._hidden:
            self._hidden.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._hidden and self._hidden[-1] == tag:
            self._hidden.pop()

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.text.append(data)

    def visible_text(self) -> str:
        return re.sub(r"\s+", " ", "".join(self.text)).strip()


def page(html: str) -> _Page:
    parsed = _Page()
    parsed.feed(html)
    parsed.close()
    return parsed


def short_place_holders() -> dict[str, Any]:
    """The shortest plausible event: every value a reader would see is a word or two."""
    return {
        "tracking_unit_name": "Acme",
        "via": "TV",
        "logouri": "https://c.example/l.png",
        "mentions": [
            {
                "program_name": "News",
                "program_image": "https://c.example/p.jpg",
                "mention_date": 1764062400,
                "snippets": "Acme opens",
                "invite_link": "https://a.example/m/1",
                "via": "TV",
                "unsubscribe_link": "https://a.example/u/1",
            }
        ],
    }


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("holders", [short_place_holders, lambda: place_holders(1)], ids=["short", "typical"])
def test_single_mention_html_is_not_image_only(store: TemplateStore, language: str, holders: Any) -> None:
    """SpamAssassin's HTML_IMAGE_ONLY_04..32 fire on HTML with an <img> and at most 3,200 bytes of markup
    (HTML_IMAGE_ONLY_24 scored the old single-mention email +2.8); the reader also needs real text."""
    data = mention_template_data(holders(), from_name="", service_name="")
    html = store.render("mention-notification", "html", language, data)
    seen = page(html)
    assert len(seen.images) == 2  # the logo and the programme picture
    assert len(html.encode("utf-8")) > 3200, "SpamAssassin would score this HTML_IMAGE_ONLY_*"
    text = seen.visible_text()
    assert len(text) >= 250, text  # the short event's old email showed about 150 characters
    first = data["mention"]
    assert f"{data['tracking_unit_name']} was mentioned on {first['program_name']} ({first['via']})" in text
    assert first["invite_link"] in text  # the link is readable where the button is not


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", ["mention-notification", "mention-notification-bulk"])
def test_footer_names_the_sender_not_an_internal_service(
    store: TemplateStore, language: str, name: str
) -> None:
    data = mention_template_data(
        place_holders(2), from_name="Acme Alerts", service_name="mention-generator-2"
    )
    for part in PARTS:
        assert "mention-generator-2" not in store.render(name, part, language, data), part
    html = page(store.render(name, "html", language, data)).visible_text()
    text = store.render(name, "text", language, data)
    for body in (html, text):
        assert "You receive this email from Acme Alerts because you follow Acme Watch." in body
    anonymous = mention_template_data(place_holders(2), from_name="", service_name="mention-generator-2")
    assert "You receive this email because you follow Acme Watch." in store.render(
        name, "text", language, anonymous
    )


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("count", [1, 3])
def test_subject_and_heading_agree(store: TemplateStore, language: str, count: int) -> None:
    data = mention_template_data(place_holders(count), from_name="", service_name="")
    subject = store.render("mention-notification-bulk", "subject", language, data).strip()
    html = store.render("mention-notification-bulk", "html", language, data)
    heading = re.search(r"<h1[^>]*>(.*?)</h1>", html)
    assert heading is not None
    assert subject == heading.group(1) == f"{data['mentions_label']} for Acme Watch"
    assert store.render("mention-notification-bulk", "text", language, data).startswith(subject + "\n")
    single = store.render("mention-notification", "html", language, data)
    assert ">New mention for Acme Watch</h1>" in single
    assert store.render("mention-notification", "text", language, data).startswith(
        "New mention for Acme Watch\n"
    )


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", ["mention-notification", "mention-notification-bulk"])
def test_images_blocked_leave_readable_alt_text_not_empty_boxes(
    store: TemplateStore, language: str, name: str
) -> None:
    data = mention_template_data(place_holders(2), from_name="", service_name="")
    images = page(store.render(name, "html", language, data)).images
    assert images
    for image in images:
        style = (image.get("style") or "").replace(" ", "")
        assert image.get("alt"), image
        assert image.get("width") and image.get("height"), image  # the layout holds without the picture
        # Without these the alt text inherits nothing readable in some clients (or is clipped to a box).
        for rule in ("font-family:", "font-size:", "line-height:", "color:"):
            assert rule in style, (rule, image)
    logo = images[0]
    assert (logo["src"], logo["alt"]) == ("https://cdn.example.com/logo.png", "Acme Watch")
    without_logo = place_holders(2, logouri="")
    for m in without_logo["mentions"]:
        m["logouri"] = ""
    html = store.render(
        name, "html", language, mention_template_data(without_logo, from_name="", service_name="")
    )
    assert "Acme Watch" in page(html.split("<h1")[0]).visible_text()  # the name stands where the logo was
