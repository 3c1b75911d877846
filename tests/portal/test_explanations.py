import pytest

from portal.explanations import EXPLANATIONS, explain
from sipsync.server.causes import REJECTIONS, Cause


def test_every_cause_the_sip_service_sends_has_an_explanation():
    missing = [cause for cause in Cause if cause not in EXPLANATIONS]
    assert missing == []


@pytest.mark.parametrize("cause", list(Cause))
def test_explanations_render_without_detail(cause):
    explained = explain(cause=str(cause), code=REJECTIONS.get(cause, (None,))[0])
    assert explained.title and explained.what and explained.fix
    assert "{" not in explained.what + explained.fix


def test_codec_mismatch_names_the_codecs_offered_and_assigned():
    explained = explain(
        cause="codec_mismatch", code=488, detail={"offered": ["G722", "OPUS"], "assigned": ["PCMU", "G729"]}
    )
    assert "offered: G722, OPUS" in explained.what
    assert "enabled: PCMU, G729" in explained.what
    assert "PCMU" in explained.fix


def test_guide_causes_read_as_the_guide_says():
    assert "space" in explain(cause="bad_password", code=403).what
    assert "new password" in explain(cause="password_change_required", code=403).fix
    assert (
        "permissions"
        in explain(cause="class_not_permitted", code=404, detail={"call_class": "international"}).what
    )
    assert "redial" in explain(cause="callee_busy", code=486).fix
    assert "credit" in explain(cause="insufficient_funds", code=503).fix.lower()
    assert "503" in explain(cause="invalid_caller_id", code=503).what


def test_unknown_causes_fall_back_to_the_code():
    assert explain(cause="something_new", code=486).title == "Busy"
    assert explain(cause="", code=None).title == "Call failed"
