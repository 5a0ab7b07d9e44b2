"""Accounts on a hosted server: two people sign in through a real OpenID Connect flow (Streamlit's
`st.login` against a small provider on 127.0.0.1). What one uploads is theirs: invisible to the
other until shared by its link; their decisions train their runs alone; their share of uploads
is their own; and all of it is still theirs after signing out and back in from a new browser.
The same rules without accounts, per browser session, are tests/browser/test_app.py's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from flower_model.data import owners
from flower_model.data.dataset import find_class_root, scan_dataset
from flower_model.data.decisions import decide
from tests.browser.chromium import chromium, free_port, no_errors, require_browser, serve, settle
from tests.browser.oidc import provider

require_browser()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Iterator[dict]:
    """The app with sign-in set up against the test provider, and one upload of Ana's."""
    from flower_model.data.uploads import create_dataset
    from tests.data.test_uploads import jpeg

    home = tmp_path_factory.mktemp("accounts") / "home"
    folder = tmp_path_factory.mktemp("secrets")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLOWER_LENS_HOME", str(home))
        hers = create_dataset("ana garden", owner="account:ana@example.org")
        from flower_model.data.uploads import add_photos

        for name, colour in (("rose", (200, 20, 20)), ("tulip", (20, 20, 200))):
            photos = [(f"{i}.jpg", jpeg((colour[0] - i, colour[1], colour[2]))) for i in range(3)]
            add_photos(hers, name, photos)
        token = owners.ownership_of(hers).token  # what her share link carries
    port = free_port()
    with provider() as oidc, chromium() as browser:
        secrets_file = folder / "secrets.toml"
        secrets_file.write_text(oidc.secrets_toml(f"http://127.0.0.1:{port}"))
        env = {
            "FLOWER_LENS_HOME": str(home),
            "FLOWER_LENS_DATA": str(sample_dir),
            "FLOWER_LENS_BACKGROUND_FEATURES": "0",
            "FLOWER_LENS_UPLOAD_OWNER_DATASETS": "1",  # Ana keeps one already
        }
        log = folder / "streamlit.log"
        with serve(env, log, port=port, options=["--secrets.files", str(secrets_file)]) as url:
            yield {
                "url": url,
                "browser": browser,
                "hers": hers,
                "token": token,
                "home": home,
                "sample": sample_dir,
            }


def signed_in(site: dict, user: str):
    """Return a new browser's page, signed in as `user` through the provider."""
    page = site["browser"].new_context(viewport={"width": 1300, "height": 1000}).new_page()
    page.set_default_timeout(60_000)
    page.goto(site["url"])
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("User").fill(user)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text(f"Signed in as {user}@example.org").wait_for()
    settle(page)
    return page


def uploads_listed(page, url: str) -> list[str]:
    """Return the names of the uploaded datasets Explore offers this visitor to add to."""
    page.goto(f"{url}/explore")
    page.get_by_text("Upload photos").click()
    settle(page)
    page.get_by_label("Uploaded dataset").click()
    options = page.get_by_role("option").all_inner_texts()
    page.keyboard.press("Escape")
    return options


def upload(page, url: str, photo: Path) -> None:
    """Start a new uploaded dataset of one photo on Explore, as a visitor does."""
    page.goto(f"{url}/explore")
    page.get_by_text("Upload photos").click()
    settle(page)
    page.get_by_role("textbox", name="Its name").fill("my flowers")
    page.get_by_role("textbox", name="Class", exact=True).fill("rose")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(photo))
    settle(page)
    page.get_by_role("button", name="Add", exact=True).click()
    settle(page)


def decisions_toggle(page, url: str, data: Path) -> list[str]:
    """Return the label of Train's switch that trains with the visitor's decisions, if any."""
    page.goto(f"{url}/train?data={quote(str(data))}")
    page.get_by_role("heading", name="Train", exact=True).wait_for()
    settle(page)
    return page.get_by_text("Train with the decisions about this folder").all_inner_texts()


def test_an_accounts_upload_is_theirs_until_shared_and_in_any_browser(site: dict) -> None:
    hers: Path = site["hers"]
    ana = signed_in(site, "ana")
    assert hers.name in uploads_listed(ana, site["url"])
    no_errors(ana)
    ben = signed_in(site, "ben")
    assert hers.name not in uploads_listed(ben, site["url"])
    ben.goto(f"{site['url']}/explore?data={quote(str(hers))}")
    ben.get_by_text("opens only with the share link its owner gives you").wait_for()
    ben.goto(f"{site['url']}/explore?data={quote(str(hers))}&share={site['token']}")
    ben.get_by_text("classes").first.wait_for()
    settle(ben)
    assert ben.get_by_text("opens only with the share link").count() == 0
    no_errors(ben)
    # Ana's decisions about the shared sample train her runs alone.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLOWER_LENS_HOME", str(site["home"]))
        sample = scan_dataset(find_class_root(site["sample"]))
        decide(sample, sample.records[0].path, "exclude", owner="account:ana@example.org")
    assert "1 photo(s) left out" in " ".join(decisions_toggle(ana, site["url"], site["sample"]))
    assert decisions_toggle(ben, site["url"], site["sample"]) == []
    # Her share of uploads is hers: a second dataset is refused with the reason; Ben uploads.
    photo = next(hers.rglob("*.jpg"))
    upload(ana, site["url"], photo)
    ana.get_by_text("you already keep 1 uploaded datasets").wait_for()
    upload(ben, site["url"], photo)
    ben.get_by_text("Added 1 photo(s): rose 1.").wait_for()
    # Ana signs out, and in again from a new browser: her upload and decisions are hers still.
    ana.get_by_role("button", name="Sign out").click()
    ana.get_by_role("button", name="Sign in").wait_for()
    again = signed_in(site, "ana")
    assert hers.name in uploads_listed(again, site["url"])
    assert "1 photo(s) left out" in " ".join(decisions_toggle(again, site["url"], site["sample"]))
    no_errors(again)
