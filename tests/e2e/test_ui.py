"""The web UI in a real browser (Debian's Chromium driven by Playwright) against the real server.

Every test fails on a console error or an uncaught page error. Set RECOMATRIX_SCREENSHOTS to a
folder (e.g. docs/img) to also write the homepage and dashboard screenshots there.
"""

from __future__ import annotations

import math
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright

from recomatrix.data import World
from recomatrix.engine import Engine

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
LAPTOP = ViewportSize(width=1280, height=800)
PHONE = ViewportSize(width=390, height=844)
STAGES = ["features", "retrieval", "enrich", "ranking", "rules", "total"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install it with `apt-get install chromium`")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture()
def page(browser: Browser) -> Iterator[Page]:
    """A laptop-sized page that fails the test on any console error or uncaught page error."""
    context = browser.new_context(viewport=LAPTOP)
    opened = context.new_page()
    errors = watch_errors(opened)
    yield opened
    context.close()
    assert not errors, f"the page logged errors: {errors}"


def watch_errors(page: Page) -> list[str]:
    """A list that fills with the page's console errors and uncaught exceptions."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    return errors


def screenshot(page: Page, name: str) -> None:
    folder = os.environ.get("RECOMATRIX_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def open_homepage(page: Page, base_url: str, user: str) -> None:
    page.goto(f"{base_url}/?user={user}")
    page.wait_for_selector("[data-testid=rec-card]")
    wait_settled(page, since_revision=0)


def wait_settled(page: Page, *, since_revision: int) -> int:
    """Wait until the grid was redrawn after `since_revision` and nothing is in flight."""
    page.wait_for_function(
        "r => document.body.dataset.inflight === '0'"
        " && Number(document.getElementById('grid').dataset.revision) > r",
        arg=since_revision,
        timeout=5000,
    )
    return revision(page)


def revision(page: Page) -> int:
    return int(page.get_attribute("#grid", "data-revision") or 0)


def grid_genres(page: Page) -> Counter[str]:
    cards = page.locator("[data-testid=rec-card]")
    return Counter(cards.evaluate_all("cards => cards.map(c => c.dataset.genre)"))


def new_user() -> str:
    return f"ui-{uuid.uuid4().hex[:8]}"


def features(http: httpx.Client, user: str) -> dict[str, Any]:
    body: dict[str, Any] = http.get(f"/v1/users/{user}/features").json()
    return body


def test_skipping_cards_of_one_genre_makes_that_genre_fall_in_the_grid(
    page: Page, base_url: str, http: httpx.Client, world: World
) -> None:
    user, genre = new_user(), world.genres[0]
    liked = [item.item_id for item in world.items if item.genre == genre][:6]
    likes = [{"user_id": user, "item_id": i, "type": "like"} for i in liked]
    assert http.post("/v1/events", json={"events": likes}).status_code == 202
    deadline = time.monotonic() + 2
    while features(http, user)["windows"]["5m"].get("like") != 6:
        assert time.monotonic() < deadline, "the seeded likes were not applied"
        time.sleep(0.01)
    open_homepage(page, base_url, user)
    # The genre the grid shows most after the likes (usually the liked one; how far it
    # leads depends on training and on what earlier tests did to the shared items), so
    # the test is about skips, not about the likes (test_http_api covers those).
    shown = grid_genres(page)
    genre, before = max(shown.items(), key=lambda kv: (kv[1], kv[0] == genre))
    assert before >= 3, f"no genre leads the grid: {shown}"
    cards = page.locator("[data-testid=rec-card]")
    assert set(cards.evaluate_all("cs => cs.map(c => c.dataset.source)")) <= {
        "personal", "trending", "fresh", "popular"
    }  # fmt: skip

    # A skip hides its item (24 h) and lowers nothing else about the genre, so the genre
    # falls once the skips thin its best candidates: 4, 15, 4 and 6 skips in four runs on
    # 2026-12-07, with the genre at the adjacency rule's ceiling (14 of 20 cards); three runs
    # that day failed at the old cap of 12. 30 still fails if skipped cards stayed shown.
    skipped: list[str] = []
    now = revision(page)
    while grid_genres(page)[genre] >= before and len(skipped) < 30:
        ids = page.locator(f"[data-testid=rec-card][data-genre='{genre}']").evaluate_all(
            "cs => cs.map(c => c.dataset.itemId)"
        )
        target = next(i for i in ids if i not in skipped)
        page.locator(f"[data-testid=rec-card][data-item-id='{target}'] [data-action=skip]").click()
        skipped.append(target)
        now = wait_settled(page, since_revision=now)

    assert grid_genres(page)[genre] < before, f"{genre} did not fall after {len(skipped)} skips"
    assert features(http, user)["windows"]["5m"].get("skip") == len(skipped)
    assert re.search(r"adapted in \d+ ms", page.inner_text("#status"))


def test_completing_an_item_by_keyboard_removes_its_card(
    page: Page, base_url: str, http: httpx.Client
) -> None:
    user = new_user()
    open_homepage(page, base_url, user)
    first = page.locator("[data-testid=rec-card]").first
    item_id = first.get_attribute("data-item-id")
    assert item_id and first.locator(".title").inner_text().strip()
    first.locator("details.why summary").click()
    assert first.locator(".why-body li").count() == 3  # the three most telling values

    for _ in range(30):  # the card's buttons are reachable with Tab, and focus is visible
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.action") == "complete":
            break
    focused = page.evaluate_handle("document.activeElement")
    assert focused.evaluate("e => e.closest('[data-testid=rec-card]').dataset.itemId") == item_id
    assert focused.evaluate("e => getComputedStyle(e).outlineStyle") != "none"
    now = revision(page)
    page.keyboard.press("Enter")
    wait_settled(page, since_revision=now)

    assert page.locator(f"[data-testid=rec-card][data-item-id='{item_id}']").count() == 0
    assert page.locator("[data-testid=rec-card]").count() == 20
    assert item_id in features(http, user)["watched"]
    assert page.evaluate("document.activeElement.dataset.action") == "complete"  # focus kept


def test_user_picker_random_and_new_user_buttons_each_load_a_grid(
    page: Page, base_url: str
) -> None:
    open_homepage(page, base_url, "user-1")
    picker = page.get_by_test_id("user-picker")

    def search_user_7() -> None:
        picker.fill("user-7")
        picker.press("Enter")

    steps: list[tuple[Callable[[], None], str]] = [
        (search_user_7, r"^user-7$"),
        (page.get_by_role("button", name="Random user").click, r"^(user-)?\d+$"),
        (page.get_by_role("button", name="New user").click, r"^visitor-\w+$"),
    ]
    for press, expected in steps:
        now = revision(page)
        press()
        wait_settled(page, since_revision=now)
        user = picker.input_value()
        assert re.match(expected, user), user
        assert page.inner_text("#summary").startswith(user)
        assert page.url.endswith(f"?user={user}")
        assert page.locator("[data-testid=rec-card]").count() == 20
    assert "not personalised yet" in page.inner_text("#summary")  # the new visitor


def test_uploaded_item_shows_its_indexing_time_and_similar_items(
    page: Page, base_url: str, http: httpx.Client, world: World, active_users: list[str]
) -> None:
    twin = world.items[0]
    open_homepage(page, base_url, active_users[10])  # only reads: the user's state is untouched
    form = page.get_by_test_id("upload-form")
    form.locator("[name=title]").fill(twin.title)
    form.locator("[name=description]").fill(twin.description)
    form.locator("[name=tags]").fill(", ".join(twin.tags))
    form.locator("[name=genre]").fill(twin.genre)
    form.locator("[name=creator]").fill("creator-ui-test")
    form.locator("button[type=submit]").click()

    indexed = page.get_by_test_id("indexed-ms")
    indexed.wait_for(timeout=5000)
    match = re.search(r"Indexed in ([\d.]+) ms", indexed.inner_text())
    assert match and 0 < float(match.group(1)) < 1000
    new_id = indexed.get_attribute("data-item-id")
    assert new_id and http.get(f"/v1/items/{new_id}").json()["creator_id"] == "creator-ui-test"
    similar = page.get_by_test_id("similar-list").locator("li")
    assert similar.count() == 8
    genres = Counter(similar.evaluate_all("lis => lis.map(li => li.dataset.genre)"))
    assert genres[twin.genre] >= 6, f"an uploaded {twin.genre} item is near {genres}"
    page.locator("[data-testid=rec-card] details.why summary").first.click()
    screenshot(page, "homepage")
    assert http.delete(f"/v1/items/{new_id}").status_code == 204


def send_traffic(http: httpx.Client, world: World, *, users: int) -> None:
    """One recommendation request and one click per user (the first `users` of the world)."""
    for user in world.users[:users]:
        http.get(f"/v1/recommendations/{user}")
    clicks = [{"user_id": u, "item_id": world.items[1].item_id, "type": "click"}
              for u in world.users[:users]]  # fmt: skip
    http.post("/v1/events", json={"events": clicks})


def test_dashboard_charts_live_metrics_from_prometheus_text(
    page: Page, base_url: str, http: httpx.Client, engine: Engine, world: World
) -> None:
    page.goto(f"{base_url}/dashboard")
    page.wait_for_function("Number(document.body.dataset.scrapes || 0) >= 1")
    charts = ["requests", "latency", "events", "lag", "index", "model", "trending"]

    def chart_state() -> dict[str, Any]:
        state: dict[str, Any] = page.evaluate(
            """names => Object.fromEntries(names.map(n => {
                 const c = document.querySelector(`[data-testid=chart-${n}]`);
                 const legend = Object.fromEntries([...c.querySelectorAll('.legend-item')]
                   .map(i => [i.dataset.series, Number(i.dataset.value)]));
                 const samples = Number(c.dataset.samples);
                 return [n, {samples, legend, version: c.dataset.version}];
               }))""",
            charts,
        )
        return state

    deadline = time.monotonic() + 15
    while True:  # traffic while the page scrapes: rates need two scrapes that differ
        send_traffic(http, world, users=8)
        state = chart_state()
        if (
            state["requests"]["legend"]["requests/s"] > 0
            and state["events"]["legend"]["accepted/s"] > 0
            and state["lag"]["legend"]["p50"] > 0
            and state["trending"]["samples"] > 0
        ):
            break
        assert time.monotonic() < deadline, f"the charts got no data: {state}"
        time.sleep(0.25)

    assert all(state[name]["samples"] > 0 for name in charts), state
    assert state["latency"]["samples"] == 12  # p50 and p99 for each of the six stages
    stages = page.locator("#latency-table tr").evaluate_all(
        "rows => rows.map(r => [r.dataset.stage, Number(r.dataset.p50), Number(r.dataset.p99)])"
    )
    assert [s[0] for s in stages] == STAGES
    assert all(0 < p50 <= p99 < 1.0 for _, p50, p99 in stages)
    assert state["index"]["legend"]["main"] == len(engine.index.main)
    assert state["model"]["version"] == engine.models.version
    assert page.locator("#trending-list li[data-item-id]").count() > 0
    if os.environ.get("RECOMATRIX_SCREENSHOTS"):  # give the picture a minute of varying load
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < 60:
            send_traffic(http, world, users=int(6 + 5 * math.sin(elapsed / 8)))
            time.sleep(0.1)
    screenshot(page, "dashboard")


def test_dashboard_reads_prometheus_text_as_prometheus_does(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/dashboard")
    text = """# HELP x_seconds A histogram.
x_seconds_bucket{le="0.001",stage="a"} 2.0
x_seconds_bucket{le="0.0025",stage="a"} 6.0
x_seconds_bucket{le="0.005",stage="a"} 8.0
x_seconds_bucket{le="+Inf",stage="a"} 8.0
x_seconds_bucket{le="0.001",stage="b \\"q\\""} 1.0
x_seconds_bucket{le="+Inf",stage="b \\"q\\""} 3.0
requests_total 12.0
requests_total{job="late"} 3.0 1700000000000
"""
    got = page.evaluate(
        """async text => {
             const p = await import('/static/prom.js');
             const s = p.parseMetrics(text);
             const a = p.buckets(s, 'x_seconds', {stage: 'a'});
             const b = p.buckets(s, 'x_seconds', {stage: 'b "q"'});
             const before = {at: 10, samples: p.parseMetrics('requests_total 3')};
             return {p50: p.histogramQuantile(0.5, a), p99: p.histogramQuantile(0.99, a),
                     inf: p.histogramQuantile(0.9, b), empty: p.histogramQuantile(0.5, []),
                     total: p.sum(s, 'requests_total'),
                     rate: p.rate(before, {at: 13, samples: s}, 'requests_total'),
                     reset: p.rate({at: 0, samples: p.parseMetrics('requests_total 100')},
                                   {at: 2, samples: s}, 'requests_total')};
           }""",
        text,
    )
    # histogram_quantile: linear inside the bucket holding the rank; the +Inf bucket answers
    # with the highest finite bound; no observations answer NaN.
    assert got["p50"] == pytest.approx(0.001 + 0.0015 * (4 - 2) / 4)
    assert got["p99"] == pytest.approx(0.0025 + 0.0025 * (7.92 - 6) / 2)
    assert got["inf"] == pytest.approx(0.001)
    assert math.isnan(got["empty"])
    assert got["total"] == 15.0
    assert got["rate"] == pytest.approx((15 - 3) / 3)
    assert got["reset"] == pytest.approx(15 / 2)  # a counter that went down was restarted


@pytest.mark.parametrize("path", ["/?user=user-1", "/dashboard"])
def test_pages_fit_a_phone_screen_without_sideways_scrolling(
    browser: Browser, base_url: str, path: str
) -> None:
    context = browser.new_context(viewport=PHONE)
    phone = context.new_page()
    errors = watch_errors(phone)
    phone.goto(f"{base_url}{path}")
    phone.wait_for_function(
        "document.querySelector('[data-testid=rec-card]')"
        " || Number(document.body.dataset.scrapes) >= 1"
    )
    overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    context.close()
    assert overflow <= 0, f"{path} scrolls sideways by {overflow}px at {PHONE['width']}px"
    assert not errors
