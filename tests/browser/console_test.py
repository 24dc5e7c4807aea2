"""The console in headless Chromium against a live server and the fake Clerk.

Run by tests/console.rs, which starts both and passes their addresses and keys in the
environment. Each check is a function; the run prints `N passed, N failed` and exits non-zero on
any failure. Screenshots of the main views go to $SCREENSHOT_DIR for a person to look at.
"""

import json
import os
import struct
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

URL = os.environ["CONSOLE_URL"]
KEY = os.environ["CLERK_INDEX_API_KEY"]
PUBLIC_KEY = os.environ["CLERK_INDEX_PUBLIC_KEY"]
FAKE = os.environ["FAKE_CLERK_URL"]
XSS_ID = os.environ["XSS_USER_ID"]
XSS_NAME = "<img src=x onerror=alert(1)>"
SHOTS = os.environ.get("SCREENSHOT_DIR", tempfile.mkdtemp())
DOWNLOADS = tempfile.mkdtemp()


def api(method, body, key=KEY):
    request = urllib.request.Request(
        f"{URL}/clerkindex.v1.{method}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        return json.load(error)


def clerk(method, path, body):
    request = urllib.request.Request(
        f"{FAKE}{path}",
        data=json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json", "Authorization": "Bearer sk_test_fake_clerk"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def label(value):
    """A terms bucket's value as the chart labels it: strings bare, the rest as JSON."""
    if "string" in value:
        return value["string"]
    kind, inner = next(iter(value.items()))
    return "null" if kind == "null" else str(inner).lower() if isinstance(inner, bool) else str(inner)


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"]:
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs", {"download.default_directory": DOWNLOADS, "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_script_timeout(20)
    return driver


def wait(condition, what, timeout=15):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as error:  # the page may still be rendering
            last = error
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


def sign_in(driver, key):
    driver.get(f"{URL}/")
    driver.find_element(By.ID, "api-key").send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "#sign-in-form button").click()
    wait(lambda: driver.find_element(By.ID, "build-view").is_displayed(), "the build view")
    # The key is in the tab's session storage, never in the URL.
    assert key not in driver.current_url


def set_filter(driver, text):
    box = driver.find_element(By.ID, "filter-text")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(text)
    box.send_keys(Keys.ESCAPE)


def shot(driver, name):
    driver.save_screenshot(os.path.join(SHOTS, f"{name}.png"))


def test_the_live_count_equals_count_users(driver):
    sign_in(driver, KEY)
    text = 'public.membership_tier = "gold" AND created_at > 2020-01-01'
    set_filter(driver, text)
    expected = api("UserIndex/CountUsers", {"filter": {"expression": text}})["count"]
    wait(lambda: driver.find_element(By.ID, "count").get_attribute("data-count") == expected, f"count {expected}")
    # A key with every scope is offered private paths (the public key's check below means something).
    paths = [o.get_attribute("value") for o in driver.find_elements(By.CSS_SELECTOR, "#paths option")]
    assert any(p.startswith("private.") for p in paths), paths
    # A key with the segments scope is offered saving, and the header names its scopes.
    assert driver.find_element(By.ID, "save-card").is_displayed()
    assert "segments" in driver.find_element(By.ID, "signed-in-as").text
    # The builder shows the same filter as two rows.
    rows = driver.find_elements(By.CSS_SELECTOR, "#builder .row")
    assert len(rows) == 2, len(rows)
    shot(driver, "build")


def builder_rows(driver):
    return driver.find_elements(By.CSS_SELECTOR, "#builder .row")


def test_the_builder_negates_groups_and_adds_rows_from_the_keyboard(driver):
    text = 'NOT (public.membership_tier = "gold" AND banned = false)'
    set_filter(driver, text)
    # Read back from ValidateFilter's tree: one group with its "not" box, two rows.
    wait(lambda: driver.find_element(By.CSS_SELECTOR, '[data-group="0"] .group-not').is_selected(), "the group's not box")
    assert len(builder_rows(driver)) == 2
    # Enter in the last row's values adds an empty row below it, with the cursor in its field.
    builder_rows(driver)[-1].find_element(By.CSS_SELECTOR, ".values").send_keys(Keys.ENTER)
    wait(lambda: len(builder_rows(driver)) == 3, "a third row")
    new = builder_rows(driver)[2]
    assert driver.switch_to.active_element == new.find_element(By.CSS_SELECTOR, ".path")
    new.find_element(By.CSS_SELECTOR, ".path").send_keys("created_at", Keys.ENTER)
    Select(new.find_element(By.TAG_NAME, "select")).select_by_value("LAST_DAYS")
    new.find_element(By.CSS_SELECTOR, ".values").send_keys("400")
    written = 'NOT (public.membership_tier = "gold" AND banned = false AND created_at >= now-400d)'
    box = driver.find_element(By.ID, "filter-text")
    wait(lambda: box.get_attribute("value") == written, f"the text {written}")
    expected = api("UserIndex/CountUsers", {"filter": {"expression": written}})["count"]
    wait(lambda: driver.find_element(By.ID, "count").get_attribute("data-count") == expected, f"count {expected}")
    # Esc in an empty new row drops it; the filter is unchanged.
    builder_rows(driver)[-1].find_element(By.CSS_SELECTOR, ".values").send_keys(Keys.ENTER)
    wait(lambda: len(builder_rows(driver)) == 4, "a fourth row")
    builder_rows(driver)[3].find_element(By.CSS_SELECTOR, ".path").send_keys(Keys.ESCAPE)
    wait(lambda: len(builder_rows(driver)) == 3, "the empty row dropped")
    # Unticking the group's box drops the NOT; the relative date reads back as "in the last".
    driver.find_element(By.CSS_SELECTOR, '[data-group="0"] .group-not').click()
    wait(lambda: not box.get_attribute("value").startswith("NOT"), "the text without NOT")
    set_filter(driver, "created_at >= now-30d")
    wait(lambda: len(builder_rows(driver)) == 1, "one row")
    operator = Select(builder_rows(driver)[0].find_element(By.TAG_NAME, "select"))
    wait(lambda: operator.first_selected_option.get_attribute("value") == "LAST_DAYS", "in the last (days)")
    assert builder_rows(driver)[0].find_element(By.CSS_SELECTOR, ".values").get_attribute("value") == "30"
    shot(driver, "builder")


def test_a_bad_filter_shows_its_error_at_its_position(driver):
    text = 'public.membership_tier = "gold" AND AND'
    set_filter(driver, text)
    error = api("UserIndex/CountUsers", {"filter": {"expression": text}})
    expected = next(d["debug"]["metadata"]["position"] for d in error["details"] if d["type"] == "google.rpc.ErrorInfo")
    mark = wait(lambda: driver.find_element(By.CSS_SELECTOR, "#filter-error mark"), "the error mark")
    assert mark.get_attribute("data-position") == expected, (mark.get_attribute("data-position"), expected)
    assert driver.find_element(By.ID, "filter-error-message").text == error["message"]
    shot(driver, "filter-error")


def test_the_terms_chart_has_a_bar_per_bucket_with_its_count(driver):
    set_filter(driver, 'created_at > 2020-01-01')
    path = driver.find_element(By.ID, "chart-path")
    path.clear()
    path.send_keys("public.membership_tier", Keys.TAB)
    Select(driver.find_element(By.ID, "chart-kind")).select_by_value("terms")
    answer = api("UserIndex/FacetUsers", {
        "filter": {"expression": "created_at > 2020-01-01"},
        "facets": [{"path": "public.membership_tier", "terms": {"size": 15}}],
    })
    expected = {label(b["value"]): b["count"] for b in answer["facets"][0]["terms"]["buckets"]}

    def bars():
        found = {
            bar.get_attribute("data-label"): bar.get_attribute("data-count")
            for bar in driver.find_elements(By.CSS_SELECTOR, "#chart .bar")
        }
        return found == expected and found

    wait(bars, f"bars {expected}")


def test_a_saved_segment_is_listed_and_its_live_feed_shows_an_entered_user(driver):
    text = 'public.console_flag = "on"'
    set_filter(driver, text)
    driver.find_element(By.ID, "segment-name").send_keys("console-flag")
    driver.find_element(By.CSS_SELECTOR, "#save-form button").click()
    wait(lambda: "Saved segment console-flag" in driver.find_element(By.ID, "save-status").text, "saved")
    # A destination fed by the segment is listed on its page (its deliveries to a closed port fail).
    hook = {"name": "console-hook", "url": "http://127.0.0.1:9/hook", "segments": ["console-flag"]}
    assert "destination" in api("Segments/CreateDestination", hook), "the destination was not created"
    driver.find_element(By.ID, "tab-segments").click()
    row = wait(lambda: driver.find_element(By.CSS_SELECTOR, 'tr[data-segment="console-flag"]'), "the segment row")
    row.find_element(By.TAG_NAME, "button").click()
    wait(lambda: driver.find_element(By.ID, "segment-detail").is_displayed(), "the segment detail")
    fed = wait(lambda: driver.find_element(By.CSS_SELECTOR, '#segment-destinations li[data-destination="console-hook"]'), "the destination")
    assert "http://127.0.0.1:9/hook" in fed.text, fed.text
    time.sleep(1)  # the watch is open
    user = api("UserIndex/SearchUsers", {"pageSize": 1, "filter": {"expression": 'public.membership_tier = "silver"'}})["users"][0]["id"]
    clerk("PATCH", f"/v1/users/{user}/metadata", {"public_metadata": {"console_flag": "on"}})
    wait(lambda: driver.find_element(By.CSS_SELECTOR, f'#feed li[data-kind="entered"][data-user-id="{user}"]'), "the Entered event", 30)
    shot(driver, "segments")
    driver.find_element(By.ID, "tab-build").click()


def test_an_export_downloads_every_member_and_its_ticket_works_once(driver):
    text = 'public.membership_tier = "gold"'
    set_filter(driver, text)
    expected = int(api("UserIndex/CountUsers", {"filter": {"expression": text}})["count"])
    driver.find_element(By.CSS_SELECTOR, "#export-form button").click()
    wait(lambda: driver.find_element(By.ID, "export-status").get_attribute("data-exported") == str(expected), "the export")
    path = os.path.join(DOWNLOADS, "users.csv")
    wait(lambda: os.path.exists(path) and open(path).read().count("\n") == expected + 1, "the downloaded file")
    rows = open(path).read().splitlines()
    assert rows[0] == "id,email,first_name,last_name,created_at", rows[0]
    assert len({row.split(",")[0] for row in rows[1:]}) == expected
    # A ticket asked for by the page works once.
    statuses = driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const key = sessionStorage.getItem("clerk-index-key");
        const issued = await fetch("/console/v1/export-tickets", {method: "POST",
          headers: {"Content-Type": "application/json", "Authorization": `Bearer ${key}`},
          body: JSON.stringify({filter: 'public.membership_tier = "gold"', format: "jsonl"})});
        const {url} = await issued.json();
        const first = await fetch(url);
        await first.text();
        const second = await fetch(url);
        done([issued.status, first.status, second.status]);
        """
    )
    assert statuses == [200, 200, 404], statuses


def test_the_xss_user_renders_as_text(driver):
    set_filter(driver, f'id = "{XSS_ID}"')
    columns = driver.find_element(By.ID, "table-columns")
    columns.clear()
    columns.send_keys("id,first_name", Keys.ENTER)
    selector = f'#users tr[data-user-id="{XSS_ID}"] td:nth-child(2)'
    wait(lambda: driver.find_element(By.CSS_SELECTOR, selector).text == XSS_NAME, "the user row with the name as text")
    assert not driver.find_elements(By.CSS_SELECTOR, "#users img, #user-record img")

    def click():
        # The table may be redrawn between finding the cell and clicking it: find it again.
        driver.find_element(By.CSS_SELECTOR, selector).click()
        return True

    wait(click, "a click on the user row")
    record = wait(lambda: driver.find_element(By.ID, "user-record").text, "the record")
    assert XSS_NAME in record
    try:
        driver.switch_to.alert
        raise AssertionError("an alert ran")
    except NoAlertPresentException:
        pass
    shot(driver, "user-record")


def test_the_page_fits_a_narrow_window(driver):
    driver.set_window_size(420, 900)
    try:
        # One column; nothing wider than the window but the tables, which scroll inside their card.
        wide = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert wide <= 0, f"the page is {wide} px wider than the window"
        shot(driver, "narrow")
    finally:
        driver.set_window_size(1400, 1000)


def test_a_grpc_web_call_from_the_page_origin_works(driver):
    result = driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const key = sessionStorage.getItem("clerk-index-key");
        const body = new Uint8Array([0, 0, 0, 0, 0]);
        const response = await fetch("/clerkindex.v1.UserIndex/CountUsers", {method: "POST",
          headers: {"Content-Type": "application/grpc-web+proto", "X-Grpc-Web": "1", "Authorization": `Bearer ${key}`},
          body});
        const bytes = new Uint8Array(await response.arrayBuffer());
        done([response.status, Array.from(bytes)]);
        """
    )
    status, body = result
    body = bytes(body)
    assert status == 200, status
    frames, at = [], 0
    while at + 5 <= len(body):
        flags, length = body[at], struct.unpack(">I", body[at + 1:at + 5])[0]
        frames.append((flags, body[at + 5:at + 5 + length]))
        at += 5 + length
    trailer = next(f for flags, f in frames if flags & 0x80).decode()
    assert "grpc-status:0" in trailer.replace(" ", ""), trailer
    message = next(f for flags, f in frames if flags == 0)
    # CountUsersResponse field 1 (count) is a varint after its tag 0x08.
    assert message[0] == 0x08
    count, shift = 0, 0
    for byte in message[1:]:
        count |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    assert str(count) == api("UserIndex/CountUsers", {})["count"], count


def test_a_key_without_private_sees_no_private_paths(driver):
    driver.find_element(By.ID, "sign-out").click()
    sign_in(driver, PUBLIC_KEY)
    paths = [o.get_attribute("value") for o in driver.find_elements(By.CSS_SELECTOR, "#paths option")]
    assert any(p.startswith("public.") for p in paths), paths
    assert not any(p.startswith("private.") for p in paths), [p for p in paths if p.startswith("private.")]
    set_filter(driver, "priv")
    time.sleep(0.5)
    offered = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#suggestions li")]
    assert not any("private." in o for o in offered), offered
    # Without the segments scope saving is not offered (listing is); the header names the key.
    assert not driver.find_element(By.ID, "save-card").is_displayed()
    assert driver.find_element(By.ID, "signed-in-as").text == "reader (public)", driver.find_element(By.ID, "signed-in-as").text
    shot(driver, "public-key")


def main():
    os.makedirs(SHOTS, exist_ok=True)
    # The page's headers, as the browser received them.
    with urllib.request.urlopen(f"{URL}/") as response:
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    driver = browser()
    tests = [value for name, value in globals().items() if name.startswith("test_")]
    passed = failed = 0
    try:
        for test in tests:
            try:
                test(driver)
                passed += 1
                print(f"ok {test.__name__}", flush=True)
            except Exception:
                failed += 1
                print(f"FAILED {test.__name__}", flush=True)
                traceback.print_exc()
                shot(driver, f"failed-{test.__name__}")
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]]
        for error in errors:
            print("browser console:", error["message"])
    finally:
        driver.quit()
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
