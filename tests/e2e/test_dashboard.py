"""The operator dashboard at /ui in a real headless browser (Playwright driving Debian's
chromium) against a running gateway and a fake OpenAI upstream.

Each page is screenshotted into ``$SWITCHBOARD_UI_ARTIFACTS`` (default ``artifacts/ui/`` in the
checkout, ignored by git). Without ``/usr/bin/chromium`` the module skips and says how to
install it (fails under ``SWITCHBOARD_REQUIRE_BROWSER=1``, which ``.ci/run`` sets after
installing it).
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from tests.e2e.conftest import MODEL
from tests.support.server import REPO_ROOT, RunningGateway

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    _reason = "the dashboard tests need Debian's chromium: apt-get install -y chromium"
    if os.environ.get("SWITCHBOARD_REQUIRE_BROWSER") == "1":
        pytest.fail(_reason + "; SWITCHBOARD_REQUIRE_BROWSER=1 requires it", pytrace=False)
    pytest.skip(_reason, allow_module_level=True)

from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect  # noqa: E402

pytestmark = pytest.mark.asyncio(loop_scope="module")

ARTIFACTS = Path(os.environ.get("SWITCHBOARD_UI_ARTIFACTS", REPO_ROOT / "artifacts" / "ui"))
# A prompt that must never show up on any page (the ledger keeps no prompt text).
PROMPT = "the-purple-elephant-prompt"


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(artifacts: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=str(CHROMIUM))
        yield b
        await b.close()


@pytest_asyncio.fixture(loop_scope="module")
async def context(browser: Browser, gateway: RunningGateway) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(
        base_url=gateway.http_url, viewport={"width": 1280, "height": 900}
    )
    yield ctx
    await ctx.close()


async def log_in(context: BrowserContext, key: str) -> Page:
    page = await context.new_page()
    await page.goto("/ui")
    await expect(page).to_have_url(re.compile(r"/ui/login$"))
    await page.fill("input[name=master_key]", key)
    await page.click("button[type=submit]")
    return page


async def chat(gateway: RunningGateway, key: str, text: str = PROMPT) -> httpx.Response:
    async with httpx.AsyncClient(timeout=20.0) as client:
        return await client.post(
            f"{gateway.http_url}/v1/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={"model": MODEL, "messages": [{"role": "user", "content": text}]},
        )


async def stream(gateway: RunningGateway, key: str) -> str:
    """A streamed chat completion, read to the end; its request id."""
    async with (
        httpx.AsyncClient(timeout=20.0) as client,
        client.stream(
            "POST",
            f"{gateway.http_url}/v1/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={
                "model": MODEL,
                "stream": True,
                "messages": [{"role": "user", "content": PROMPT}],
            },
        ) as response,
    ):
        assert response.status_code == 200
        body = await response.aread()
    assert body.rstrip().endswith(b"data: [DONE]")
    return response.headers["x-request-id"]


async def shot(page: Page, name: str) -> None:
    await page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


async def test_wrong_key_is_refused_with_a_clear_message(
    context: BrowserContext, gateway: RunningGateway
) -> None:
    page = await log_in(context, "sb-not-the-master-key")
    await expect(page.locator(".error")).to_have_text(re.compile("not the master key"))
    await expect(page).to_have_url(re.compile(r"/ui/login$"))
    await shot(page, "login-refused")
    assert not [c for c in await context.cookies() if c["name"] == "sb_ui_session"]
    # Still no way in: the pages send a browser without a session to the login form.
    await page.goto("/ui/keys")
    await expect(page).to_have_url(re.compile(r"/ui/login$"))


async def test_session_cookie_is_httponly_strict_and_holds_no_key(
    context: BrowserContext, gateway: RunningGateway
) -> None:
    page = await log_in(context, gateway.master_key)
    await expect(page).to_have_url(re.compile(r"/ui/usage$"))
    (cookie,) = [c for c in await context.cookies() if c["name"] == "sb_ui_session"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert gateway.master_key not in cookie["value"]
    assert gateway.master_key not in page.url
    # Nothing readable by script either (no local storage, no readable cookie).
    assert await page.evaluate("document.cookie") == ""
    assert await page.evaluate("window.localStorage.length") == 0


async def test_usage_chart_reflects_requests_just_made(
    context: BrowserContext, gateway: RunningGateway
) -> None:
    key = gateway.create_key("dash-usage")
    for _ in range(3):
        assert (await chat(gateway, key)).status_code == 200
    page = await log_in(context, gateway.master_key)
    row = page.locator("table[data-group=key] tr", has_text="dash-usage")
    # The ledger writes rows in the background (every 0.2 s): reload until they are in.
    for _ in range(50):
        if await row.count() and "3" in await row.locator("td").nth(1).inner_text():
            break
        await page.wait_for_timeout(200)
        await page.reload()
    await expect(row.locator("td").nth(1)).to_have_text("3")
    total = int((await page.locator("#total-requests").inner_text()).replace(",", ""))
    assert total >= 3
    # Today is the last bar of the requests chart; its "succeeded" bar holds every request.
    today = page.locator("#chart-requests .serie-0 .bar").last
    await expect(today.locator("desc.value")).to_have_text(str(total))
    assert float(await today.locator("rect").get_attribute("height") or 0) > 0
    spend = page.locator("#chart-spend .serie-0 .bar").last
    assert float((await spend.locator("desc.value").text_content() or "0").lstrip("$")) > 0
    await expect(page.locator("table[data-group=model]")).to_contain_text(MODEL)
    await expect(page.locator("table[data-group=provider]")).to_contain_text("openai")
    assert PROMPT not in await page.content()
    await shot(page, "usage")
    # The first screenful, as the README shows it (docs/dashboard.png is one of these).
    await page.screenshot(path=ARTIFACTS / "dashboard.png")


async def test_create_and_revoke_a_key(context: BrowserContext, gateway: RunningGateway) -> None:
    page = await log_in(context, gateway.master_key)
    await page.goto("/ui/keys")
    # Key names are user input: shown as text, never as markup.
    name = '<img src=x onerror=alert(1)> ops & "co"'
    await page.fill("form.create input[name=name]", name)
    await page.fill("form.create input[name=rpm]", "60")
    await page.click("form.create button[type=submit]")
    secret = (await page.locator("#new-secret").inner_text()).strip()
    assert secret.startswith("sb-")
    await expect(page.locator(".secret strong")).to_have_text(name)
    assert await page.locator("main img").count() == 0
    await shot(page, "keys-created")
    assert (await chat(gateway, secret, "hello")).status_code == 200

    # Shown once: the next view of the page has no secret on it.
    await page.goto("/ui/keys")
    assert secret not in await page.content()
    row = page.locator("tr", has_text=name)
    await expect(row.locator("td").nth(5)).to_have_text("60")
    await row.locator("button", has_text="Revoke").click()
    await expect(page).to_have_url(re.compile(r"/ui/keys$"))
    await expect(page.locator("tr", has_text=name)).to_contain_text("revoked")
    await shot(page, "keys")
    refused = await chat(gateway, secret, "hello again")
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["code"] == "invalid_api_key"


async def test_rotate_a_key_and_edit_its_limits(
    context: BrowserContext, gateway: RunningGateway
) -> None:
    old = gateway.create_key("dash-rotate")
    assert (await chat(gateway, old, "hello")).status_code == 200
    page = await log_in(context, gateway.master_key)
    await page.goto("/ui/keys")
    row = page.locator("tr", has_text="dash-rotate")
    await row.locator("form.rotate input[name=grace]").fill("0")
    await row.locator("form.rotate button").click()
    await expect(page.locator(".secret")).to_contain_text("Rotated dash-rotate")
    new = (await page.locator("#new-secret").inner_text()).strip()
    assert new != old
    # Grace 0: the old secret stops at once, the new one works.
    assert (await chat(gateway, old, "hello")).status_code == 401
    assert (await chat(gateway, new, "hello")).status_code == 200

    await page.goto("/ui/keys")
    row = page.locator("tr", has_text="dash-rotate")
    await row.locator("details.limits summary").click()
    await row.locator("form.edit input[name=rpm]").fill("1")
    await row.locator("form.edit input[name=max_concurrent]").fill("3")
    await row.locator("form.edit button").click()
    await expect(page).to_have_url(re.compile(r"/ui/keys$"))
    row = page.locator("tr", has_text="dash-rotate")
    await expect(row.locator("td").nth(5)).to_have_text("1")
    await expect(row.locator("td").nth(8)).to_have_text("3")
    # The new limit holds at once: one request a minute, the next refused.
    statuses = [(await chat(gateway, new, "hello")).status_code for _ in range(2)]
    assert 429 in statuses, statuses


async def test_usage_by_project(context: BrowserContext, gateway: RunningGateway) -> None:
    from server.core.state import KeySpec
    from server.store.embedded.keys import SqliteKeyStore

    store = SqliteKeyStore(gateway.data_dir)
    try:
        project = store.create_project_sync("<b>Team</b> Atlas")
        _, key = store.create_sync(KeySpec("dash-project", project_id=project.id))
    finally:
        store.close()
    assert (await chat(gateway, key)).status_code == 200
    page = await log_in(context, gateway.master_key)
    row = page.locator("table[data-group=project] tr", has_text="<b>Team</b> Atlas")
    for _ in range(50):
        if await row.count():
            break
        await page.wait_for_timeout(200)
        await page.reload()
    await expect(row.locator("td").nth(1)).to_have_text("1")
    await expect(row).to_contain_text(project.id)
    await page.goto("/ui/keys")
    await expect(page.locator("tr", has_text="dash-project")).to_contain_text("<b>Team</b> Atlas")


async def test_invalid_key_form_is_refused_with_a_message(
    context: BrowserContext, gateway: RunningGateway
) -> None:
    page = await log_in(context, gateway.master_key)
    await page.goto("/ui/keys")
    await page.fill("form.create input[name=name]", "bad-limits")
    await page.fill("form.create input[name=rpm]", "lots")
    await page.click("form.create button[type=submit]")
    await expect(page.locator(".error")).to_have_text(re.compile("rpm must be a number"))
    await page.fill("form.create input[name=name]", "bad-limits")
    await page.fill("form.create input[name=budget]", "-5")
    await page.click("form.create button[type=submit]")
    await expect(page.locator(".error")).to_contain_text("monthly_budget_usd must be positive")
    assert "bad-limits" not in await page.locator("table.keys").inner_text()


async def test_posts_without_the_csrf_token_are_refused(
    context: BrowserContext, gateway: RunningGateway
) -> None:
    page = await log_in(context, gateway.master_key)
    await expect(page).to_have_url(re.compile(r"/ui/usage$"))
    before = await context.request.get("/ui/keys")
    # The browser's own session cookie, but no token (what a forged form would send).
    missing = await context.request.post("/ui/keys/create", form={"name": "forged"})
    assert missing.status == 403
    assert "security token is missing or wrong" in await missing.text()
    wrong = await context.request.post("/ui/keys/create", form={"name": "forged", "csrf": "0" * 32})
    assert wrong.status == 403
    logout = await context.request.post("/ui/logout", form={}, max_redirects=0)
    assert logout.status == 403
    after = await context.request.get("/ui/keys")
    assert "forged" not in await after.text()
    assert (await before.text()).count("<tr") == (await after.text()).count("<tr")
    # Without any session a POST is refused as well.
    async with httpx.AsyncClient() as client:
        anonymous = await client.post(f"{gateway.http_url}/ui/keys/create", data={"name": "x"})
    assert anonymous.status_code == 401


async def test_recent_requests_and_health(
    context: BrowserContext, gateway: RunningGateway, app_key: str
) -> None:
    response = await chat(gateway, app_key)
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    stream_id = await stream(gateway, app_key)
    page = await log_in(context, gateway.master_key)
    await page.goto("/ui/requests")
    row = page.locator("tr", has_text=request_id)
    for _ in range(50):
        if await row.count() and await page.locator("tr", has_text=stream_id).count():
            break
        await page.wait_for_timeout(200)
        await page.reload()
    await expect(row).to_contain_text("success (200)")
    await expect(row).to_contain_text("e2e-openai-sdk")
    await expect(row).to_contain_text(MODEL)
    await expect(row.locator("ol.attempts li")).to_have_text(re.compile(f"^{MODEL}: success"))
    # A stream's row has its time to first token (kept by this process beside the ledger).
    streamed = page.locator("tr", has_text=stream_id)
    await expect(streamed).to_contain_text("stream")
    ttft = streamed.locator("td").nth(8)
    await expect(ttft).to_have_text(re.compile(r"^\d+\.\d ms$"))
    assert PROMPT not in await page.content()
    await shot(page, "requests")

    await page.goto("/ui/health")
    deployment = page.locator(f"tr[data-deployment='{MODEL}']")
    await expect(deployment.locator(".badge")).to_have_text("closed")
    await expect(deployment).to_contain_text(" ms")
    await expect(page.locator("table.routes")).to_contain_text("chat")
    await shot(page, "health")


async def test_logout_ends_the_session(context: BrowserContext, gateway: RunningGateway) -> None:
    page = await log_in(context, gateway.master_key)
    await expect(page).to_have_url(re.compile(r"/ui/usage$"))
    (cookie,) = [c for c in await context.cookies() if c["name"] == "sb_ui_session"]
    await page.click("form.logout button")
    await expect(page).to_have_url(re.compile(r"/ui/login$"))
    await page.goto("/ui/usage")
    await expect(page).to_have_url(re.compile(r"/ui/login$"))
    # The old token, replayed after logout, no longer opens a page.
    async with httpx.AsyncClient(cookies={"sb_ui_session": cookie["value"]}) as client:
        replay = await client.get(f"{gateway.http_url}/ui/usage")
    assert replay.status_code == 303
    assert replay.headers["location"] == "/ui/login"
