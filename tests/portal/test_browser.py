"""The main customer journeys in real headless Chromium (Debian's `chromium` + `chromium-driver`)
against a live server. Screenshots of the main pages go to artifacts/screenshots/ (git-ignored)."""

import shutil
import tempfile
from pathlib import Path

import pytest

from accounts import services as account_services
from accounts.models import CallerId, SipAccount
from sipsync.services import store_events
from tests.factories import CustomerFactory, StaffFactory, customer_user, sip_account

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("needs Chromium: install the Debian packages chromium and chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="portal-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_sip_nodes(settings):
    # No SIP node runs in these tests: pushes and live lookups fail fast and are reported.
    settings.SIP_NODES = ["http://127.0.0.1:9"]


def _by(kind):
    from selenium.webdriver.common.by import By

    return getattr(By, kind)


def _shot(driver, name):
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def _sign_in(driver, live_server, username):
    driver.delete_all_cookies()
    driver.get(live_server.url + "/login/")
    driver.find_element(_by("ID"), "id_username").send_keys(username)
    driver.find_element(_by("ID"), "id_password").send_keys("correct horse battery")
    _shot(driver, "01-sign-in")
    _submit(driver, "form button[type=submit]")
    assert "Balance" in driver.find_element(_by("TAG_NAME"), "main").text


def _submit(driver, selector="main form button[type=submit]"):
    """Click a submit button and wait for the next page to replace this one."""
    from selenium.webdriver.support.ui import WebDriverWait

    old = driver.find_element(_by("TAG_NAME"), "html")
    driver.find_element(_by("CSS_SELECTOR"), selector).click()
    WebDriverWait(driver, 10).until(lambda _: _replaced(old))


def _replaced(element) -> bool:
    """Whether `element` left the document. ChromeDriver reports a node of a page that was just
    replaced either as stale or, mid-navigation, as an 'unknown error' saying the node does not
    belong to the document: both mean the same here."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as error:
        if "does not belong to the document" in str(error):
            return True
        raise
    return False


def _text(driver):
    return driver.find_element(_by("TAG_NAME"), "body").text


def test_customer_journey(browser, live_server):
    from selenium.webdriver.support.ui import Select

    driver = browser
    customer = CustomerFactory(name="Journey Ltd")
    customer_user(customer, username="journey")
    _sign_in(driver, live_server, "journey")
    _shot(driver, "02-dashboard-empty")

    # Create an account with a generated password, shown exactly once.
    driver.find_element(_by("LINK_TEXT"), "SIP accounts").click()
    driver.find_element(_by("LINK_TEXT"), "New SIP account").click()
    driver.find_element(_by("ID"), "id_extension").send_keys("1001")
    driver.find_element(_by("ID"), "id_label").send_keys("Front desk")
    _shot(driver, "03-account-create")
    _submit(driver)
    password = driver.find_element(_by("CSS_SELECTOR"), "[data-testid=one-time-password]").text
    assert len(password) == 20
    account = SipAccount.objects.get(customer=customer, extension="1001")
    assert account.username in _text(driver)
    copy = driver.find_element(_by("CSS_SELECTOR"), "button[data-copy]")
    _shot(driver, "04-password-once")
    copy.click()
    driver.refresh()
    assert password not in _text(driver)
    assert "no longer available" in _text(driver)

    # Change the codecs: G.722 first, then PCMU; G.729A off.
    driver.find_element(_by("LINK_TEXT"), "Continue to the account").click()
    _shot(driver, "05-account-detail")
    driver.find_element(_by("LINK_TEXT"), "Codecs").click()
    Select(driver.find_element(_by("ID"), "id_pos_G722")).select_by_value("1")
    Select(driver.find_element(_by("ID"), "id_pos_PCMU")).select_by_value("2")
    Select(driver.find_element(_by("ID"), "id_pos_G729")).select_by_value("")
    _shot(driver, "06-codecs")
    _submit(driver)
    assert "Codecs saved: G722, PCMU." in _text(driver)
    assert [c.codec for c in account.codec_assignments.order_by("position")] == ["G722", "PCMU"]

    # Request a caller ID; pending until staff approve it.
    driver.find_element(_by("LINK_TEXT"), "Caller IDs").click()
    driver.find_element(_by("ID"), "id_number").send_keys("0115550100")
    _submit(driver)
    row = driver.find_element(_by("CSS_SELECTOR"), "[data-testid='caller-id-+27115550100']")
    assert "Pending approval" in row.text
    _shot(driver, "07-caller-ids-pending")
    account_services.caller_id_approve(caller_id=CallerId.objects.get(customer=customer), by=StaffFactory())
    driver.refresh()
    row = driver.find_element(_by("CSS_SELECTOR"), "[data-testid='caller-id-+27115550100']")
    assert "Approved" in row.text
    _shot(driver, "08-caller-ids-approved")

    # A failed registration, stored as the collector stores it, is explained in diagnostics.
    store_events(
        "http://127.0.0.1:9",
        [
            {
                "id": 1,
                "kind": "rejection",
                "time": "2026-11-24T08:00:00.123Z",
                "node": "sip1",
                "method": "REGISTER",
                "code": 403,
                "reason_phrase": "Forbidden",
                "cause": "bad_password",
                "account": f"{account.username}@{account.realm}",
                "source_ip": "198.51.100.7",
                "source_port": 5060,
                "user_agent": "Yealink SIP-T46U",
                "detail": {},
            },
            {
                "id": 2,
                "kind": "rejection",
                "time": "2026-11-24T08:01:00.000Z",
                "node": "sip1",
                "method": "INVITE",
                "code": 488,
                "reason_phrase": "Not Acceptable Here",
                "cause": "codec_mismatch",
                "account": f"{account.username}@{account.realm}",
                "detail": {"offered": ["G729"], "assigned": ["G722", "PCMU"]},
            },
        ],
    )
    driver.find_element(_by("LINK_TEXT"), "Why did my call fail?").click()
    text = _text(driver)
    assert "Wrong password" in text and "How to fix it:" in text
    assert "offered: G729; enabled: G722, PCMU" in text
    _shot(driver, "09-diagnostics")

    # Live registration with the node down: a clear message, not an error page.
    driver.get(f"{live_server.url}/sip-accounts/{account.pk}/registrations/")
    assert "could not be reached" in _text(driver)
    _shot(driver, "10-registrations-node-down")

    # The dashboard on a phone-sized screen: no sideways scrolling.
    driver.set_window_size(390, 844)
    try:
        driver.get(live_server.url + "/")
        assert "Wrong password" in _text(driver)
        # The live column is filled after the page loads; no node answers in these tests.
        live = driver.find_element(_by("CSS_SELECTOR"), f"[data-registration='{account.pk}'] [data-state]")
        assert live.get_attribute("data-state") == "unknown" and "could not be reached" in live.text
        assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
        _shot(driver, "11-dashboard-phone")
    finally:
        driver.set_window_size(1280, 900)


def test_form_errors_keep_what_was_typed(browser, live_server):
    driver = browser
    customer_user(CustomerFactory(), username="typist")
    _sign_in(driver, live_server, "typist")
    driver.get(live_server.url + "/sip-accounts/new/")
    driver.find_element(_by("ID"), "id_extension").send_keys("2001")
    driver.find_element(_by("ID"), "id_label").send_keys("Warehouse")
    driver.find_element(_by("CSS_SELECTOR"), "input[name=password_mode][value=custom]").click()
    driver.find_element(_by("ID"), "id_password").send_keys("has a space 123X")
    _submit(driver)
    assert "contains a space" in _text(driver)
    assert driver.find_element(_by("ID"), "id_extension").get_attribute("value") == "2001"
    assert driver.find_element(_by("ID"), "id_label").get_attribute("value") == "Warehouse"
    _shot(driver, "12-form-error")


def test_another_customers_pages_are_404(browser, live_server):
    driver = browser
    customer_user(CustomerFactory(), username="nosy")
    theirs = sip_account(CustomerFactory(), "1001").account
    _sign_in(driver, live_server, "nosy")
    for path in ("", "edit/", "codecs/", "password/"):
        driver.get(f"{live_server.url}/sip-accounts/{theirs.pk}/{path}")
        assert "Not Found" in driver.title or "Not Found" in _text(driver)
        assert theirs.username not in driver.page_source


def test_calls_and_money(browser, live_server):
    """Calls with a filter, the CSV link keeping it, the balance and ledger with the spend chart,
    and both pages on a phone-sized screen."""
    from datetime import timedelta

    from django.utils import timezone
    from selenium.webdriver.support.ui import Select

    from billing import services as billing_services
    from billing.models import CallRecord, RatePlan
    from billing.rating import rate_record
    from tests.billing.conftest import make_rate, make_record

    plan = RatePlan.objects.create(name="Browser plan", currency="ZAR", is_default=True)
    make_rate(plan, "27", "0.60", description="South Africa", start=timezone.now() - timedelta(days=400))
    driver = browser
    customer = CustomerFactory(name="Money Journey Ltd", rate_plan=plan)
    customer_user(customer, username="payer")
    account = sip_account(customer, "1001", label="Front desk").account
    billing_services.credit_load(
        customer=customer, amount="100.00", by=StaffFactory(), idempotency_key="load-1", reference="INV-7"
    )
    for n, answered in enumerate([True, True, False]):
        record = make_record(
            customer, at=timezone.now() - timedelta(hours=n + 1), answered=answered, duration=60
        )
        CallRecord.objects.filter(pk=record.pk).update(sip_account=account)
        rate_record(record.pk)
    _sign_in(driver, live_server, "payer")

    driver.find_element(_by("LINK_TEXT"), "Calls").click()
    assert "3 calls" in _text(driver)
    Select(driver.find_element(_by("ID"), "id_outcome")).select_by_value("answered")
    _submit(driver)
    assert "2 calls" in _text(driver) and "South Africa" in _text(driver)
    csv_link = driver.find_element(_by("LINK_TEXT"), "Download CSV").get_attribute("href")
    assert csv_link.endswith("/billing/calls.csv?account=&since=&until=&outcome=answered&number=")
    _shot(driver, "13-calls-filtered")

    driver.find_element(_by("LINK_TEXT"), "Money").click()
    balance = driver.find_element(_by("CSS_SELECTOR"), "[data-testid=money-balance]").text
    assert balance == "98.80 ZAR"  # 100 less two answered minutes at 0.60
    assert driver.find_element(_by("CSS_SELECTOR"), "[data-testid=spend-chart]").is_displayed()
    assert "INV-7" in _text(driver)
    _shot(driver, "14-money")

    driver.set_window_size(390, 844)
    try:
        for path, name in (("/billing/calls/", "15-calls-phone"), ("/billing/money/", "16-money-phone")):
            driver.get(live_server.url + path)
            assert driver.execute_script(
                "return document.documentElement.scrollWidth <= window.innerWidth + 1"
            ), path
            _shot(driver, name)
    finally:
        driver.set_window_size(1280, 900)


def test_api_key_created_copied_and_revoked(browser, live_server):
    from accounts import api_keys
    from accounts.models import ApiKey

    driver = browser
    customer = CustomerFactory(name="Integrator Ltd")
    customer_user(customer, username="integrator")
    _sign_in(driver, live_server, "integrator")
    driver.find_element(_by("LINK_TEXT"), "API keys").click()
    driver.find_element(_by("ID"), "id_name").send_keys("CRM integration")
    _submit(driver)
    plaintext = driver.find_element(_by("CSS_SELECTOR"), "[data-testid=one-time-key]").text
    assert api_keys.api_key_authenticate(plaintext) == ApiKey.objects.get(customer=customer)
    driver.find_element(_by("CSS_SELECTOR"), "button[data-copy]").click()
    _shot(driver, "17-api-key-once")
    driver.refresh()
    assert plaintext not in driver.page_source
    driver.find_element(_by("LINK_TEXT"), "Back to the API keys").click()
    driver.execute_script("window.confirm = function () { return true; };")
    _submit(driver, "form[data-confirm] button[type=submit]")
    assert "Revoked “CRM integration”" in _text(driver)
    assert api_keys.api_key_authenticate(plaintext) is None
    _shot(driver, "18-api-keys")
