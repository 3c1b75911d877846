"""SDP parsing, codec listing and filtering."""

from __future__ import annotations

import pytest

from sipsync.sip.errors import SipParseError
from sipsync.sip.sdp import Media, SessionDescription, filter_codecs, offered_codecs

OFFER = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0 8 18 9 111 101 13\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:111 opus/48000/2\r\n"
    b"a=fmtp:111 minptime=10;useinbandfec=1\r\n"
    b"a=rtpmap:18 G729/8000\r\n"
    b"a=fmtp:18 annexb=no\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
    b"m=video 51372 RTP/AVP 96\r\n"
    b"b=AS:512\r\n"
    b"a=rtpmap:96 H264/90000\r\n"
)


def test_parse() -> None:
    sdp = SessionDescription.parse(OFFER)
    assert sdp.connection == "IN IP4 192.0.2.10"
    audio, video = sdp.media
    assert (audio.kind, audio.port, audio.proto) == ("audio", 49170, "RTP/AVP")
    assert audio.formats == ["0", "8", "18", "9", "111", "101", "13"]
    assert audio.attribute("ptime") == "20" and ("sendrecv", None) in audio.attributes
    assert audio.codec_names() == [
        ("0", "PCMU"), ("8", "PCMA"), ("18", "G729"), ("9", "G722"), ("111", "OPUS"),
        ("101", "TELEPHONE-EVENT"), ("13", "CN"),
    ]
    assert video.lines == [("b", "AS:512")] and video.connection is None


def test_round_trip() -> None:
    sdp = SessionDescription.parse(OFFER)
    assert sdp.to_bytes() == OFFER
    assert SessionDescription.parse(OFFER.decode()).to_bytes() == OFFER
    assert str(sdp) == OFFER.decode()


def test_offered_codecs() -> None:
    assert offered_codecs(SessionDescription.parse(OFFER)) == ["PCMU", "PCMA", "G729", "G722", "OPUS"]


def test_filter_codecs() -> None:
    sdp = SessionDescription.parse(OFFER)
    filtered = filter_codecs(sdp, ["pcma", "Opus"])
    audio = filtered.media[0]
    assert audio.formats == ["8", "111", "101"]
    assert audio.attributes == [
        ("rtpmap", "111 opus/48000/2"), ("fmtp", "111 minptime=10;useinbandfec=1"),
        ("rtpmap", "101 telephone-event/8000"), ("fmtp", "101 0-16"), ("ptime", "20"), ("sendrecv", None),
    ]
    assert filtered.media[1].formats == ["96"]  # video untouched
    assert sdp.media[0].formats[0] == "0"  # the original is not modified
    assert b"m=audio 49170 RTP/AVP 8 111 101\r\n" in filtered.to_bytes()


def test_filter_codecs_keeps_an_offer_with_nothing_to_remove_as_it_is() -> None:
    sdp = SessionDescription.parse(OFFER)
    everything = ["PCMU", "PCMA", "G729", "G722", "OPUS", "CN"]
    assert filter_codecs(sdp, everything) is sdp
    without_cn = filter_codecs(sdp, everything[:-1])  # CN is not a codec offered, but not kept either
    assert without_cn is not sdp and "13" not in without_cn.media[0].formats


def test_filter_codecs_nothing_left_rejects_stream() -> None:
    filtered = filter_codecs(SessionDescription.parse(OFFER), ["GSM"])
    assert filtered.media[0].port == 0
    assert filtered.media[0].formats  # an m-line always keeps a format
    assert filtered.media[1].port == 51372


def test_media_port_count_and_copy() -> None:
    sdp = SessionDescription.parse("v=0\nm=audio 5004/2 RTP/AVP 0\n")
    media = sdp.media[0]
    assert (media.port, media.port_count) == (5004, 2)
    assert media.m_line() == "audio 5004/2 RTP/AVP 0"
    clone = media.copy()
    clone.formats.append("8")
    assert media.formats == ["0"]
    assert Media("audio", 1, "RTP/AVP", ["96"]).codec_names() == [("96", "")]


@pytest.mark.parametrize(
    "text", ["", "o=x\r\n", "v=0\r\nbad line\r\n", "v=0\r\nm=audio\r\n", "v=0\r\nm=audio x RTP/AVP 0\r\n",
             "v=0\r\nm=audio 70000 RTP/AVP 0\r\n", "v=0\r\nm=audio 1/x RTP/AVP 0\r\n", "v=0\r\nxx=1\r\n"],
)
def test_malformed(text: str) -> None:
    with pytest.raises(SipParseError):
        SessionDescription.parse(text)
