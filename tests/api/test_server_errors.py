import pytest

from accounts import selectors


@pytest.mark.django_db
def test_an_unexpected_failure_in_the_api_answers_in_the_error_shape(client, monkeypatch, admin_user):
    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(selectors, "sip_account_list", broken)
    client.raise_request_exception = False
    client.force_login(admin_user)
    response = client.get("/api/v1/sip-accounts/")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "server_error"
    assert "boom" not in response.content.decode()
