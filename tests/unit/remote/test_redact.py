"""Redaction masks known secrets and anything shaped like a Hub or RunPod token."""

from __future__ import annotations

import io

from remote.redact import MASK, RedactingStream, Redactor


def test_known_secret_and_token_shapes_are_masked():
    r = Redactor(["s3cr3t-value-123"])
    text = r("key=s3cr3t-value-123 hf=hf_" + "a" * 34 + " rp=rpa_" + "B" * 30 + " Authorization: Bearer abc.def")
    assert "s3cr3t" not in text and "hf_aaaa" not in text and "rpa_BBBB" not in text and "abc.def" not in text
    assert text.count(MASK) == 4


def test_stream_wrapper_masks_what_libraries_print():
    sink = io.StringIO()
    stream = RedactingStream(sink, Redactor(["tok-123456"]))
    stream.write("loading with tok-123456\n")
    assert sink.getvalue() == f"loading with {MASK}\n"
