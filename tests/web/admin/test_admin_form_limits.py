"""The admin forms' limits match the rules, are said on the page, and refusals name the field.

An AE title over 16 characters is refused with a message naming "AE title" (the form holds it
to 16 and says so; nothing is cut), user names are held to the account rule, the password rule
(12 characters at least) is shown, and no message of the web names a command-line flag
(``--host``, ``--allow``, ``--port``, ``--plaintext``), while the CLI keeps its flags.
"""

from __future__ import annotations

import re

import pytest

from pacs.cli import main
from pacs.core.nodes import NodeRegistry
from pacs.core.passwords import MIN_PASSWORD
from pacs.serve.webadmin import PacsAdmin
from tests.web.admin.admin_helpers import _enrol
from tests.web.web_helpers import Browser, Web, messages

FLAGS = re.compile(r"--[a-z]")


def _input(page: str, name: str) -> str:
    found = re.search(rf'<input name="{name}"[^>]*>', page)
    assert found, f"no input {name}"
    return found.group(0)


def test_the_enrolment_form_holds_the_ae_title_to_16_and_says_so(boss: Browser) -> None:
    page = boss.get("/admin/modalities").text
    assert 'maxlength="16"' in _input(page, "ae_title")
    rule = re.search(r'<small class="rule" id="ae-title-rule">(.*?)</small>', page, re.S)
    assert (
        rule
        and "1 to 16 characters" in rule.group(1)
        and "refused, not cut" in " ".join(rule.group(1).split())
    )


def test_a_17_character_ae_title_is_refused_naming_the_field_and_nothing_is_enrolled(
    web: Web, boss: Browser
) -> None:
    title = "ABCDEFGHIJKLMNOPQ"
    response = _enrol(boss, ae_title=title, host="10.0.0.5")
    assert response.status_code == 302
    shown = boss.messages()
    assert shown == [
        f"Not enrolled: AE title '{title}' must be 1 to 16 printable ASCII characters, not all spaces, "
        "without a backslash (it has 17)"
    ]
    assert NodeRegistry(web.pacs.database).all() == []
    assert [n.ae_title for n in NodeRegistry(web.pacs.database).all()] != [title[:16]]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"ae_title": "CT2", "host": "10.0.0.0/33"}, "Address (IP or CIDR): '10.0.0.0/33'"),
        ({"ae_title": "CT2", "host": "10.0.0.6", "port": "70000"}, "Port for retrieves: 70000"),
        ({"ae_title": "CT2", "host": "10.0.0.6", "port": "eleven"}, "Port for retrieves: 'eleven'"),
        ({"ae_title": "CT2", "host": "10.0.0.6", "allow": "fly"}, "May: tick one or more of"),
    ],
    ids=["host", "port-range", "port-text", "rights"],
)
def test_enrolment_refusals_name_the_form_field_not_a_flag(
    web: Web, boss: Browser, fields: dict[str, str], field: str
) -> None:
    _enrol(boss, **fields)
    shown = boss.messages()
    assert len(shown) == 1 and shown[0].startswith(f"Not enrolled: {field}"), shown
    assert not FLAGS.search(shown[0]), shown
    assert NodeRegistry(web.pacs.database).all() == []


def test_a_rights_change_refusal_names_the_field(web: Web, boss: Browser) -> None:
    PacsAdmin(web.pacs).enrol("CT1", "10.0.0.5", "store", None, user="setup")
    token = boss.token("/admin/modalities")
    boss.client.post(
        "/admin/modalities/rights", data={"ae_title": "CT1", "allow": "fly", "csrf_token": token}
    )
    shown = boss.messages()
    assert shown == ["CT1 unchanged: May: tick one or more of store, find, move, get"]


def test_the_cli_still_names_its_flags(web: Web, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(web.pacs.settings.data_dir)
    code = main(
        ["modality", "add", "CT9", "--host", "10.0.0.0/33", "--issue-cert", "/nonexistent/x", "--data", data]
    )
    assert code == 2 and "--host '10.0.0.0/33'" in capsys.readouterr().err


def test_the_new_user_form_holds_names_to_the_account_rule_and_says_so(boss: Browser) -> None:
    page = boss.get("/admin/users").text
    field = _input(page, "name")
    assert 'maxlength="64"' in field and 'pattern="[A-Za-z0-9._@\\-]{1,64}"' in field
    assert "1 to 64 letters, digits or . _ - @" in page
    assert f"at least {MIN_PASSWORD} characters" in page


def test_a_bad_user_name_is_refused_naming_the_field(web: Web, boss: Browser) -> None:
    for name in ("bad name", "x" * 65):
        boss.post("/admin/users", {"name": name, "roles": "physician"})
        shown = boss.messages()
        assert shown == [f"user name {name!r} must be 1-64 letters, digits or . _ - @"], shown
        assert web.accounts.get(name) is None


def test_the_password_form_shows_the_minimum_length(web: Web) -> None:
    doc = web.logged_in(web.user("doc"))
    page = doc.get("/account/password").text
    assert f"fewer than {MIN_PASSWORD} characters" in page
    assert page.count(f'minlength="{MIN_PASSWORD}"') == 2


def test_no_admin_page_names_a_flag_outside_code(boss: Browser) -> None:
    for path in ("/admin/users", "/admin/modalities", "/admin/audit", "/admin/status"):
        page = boss.get(path).text
        prose = re.sub(r"<code>.*?</code>|<style.*?</style>|<pre>.*?</pre>", "", page, flags=re.S)
        body = prose.split("<main>", 1)[1]
        assert not FLAGS.search(re.sub(r"<[^>]+>", "", body)), path
    assert messages(boss.get("/admin/users").text) == []
