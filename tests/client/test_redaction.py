"""Redaction promises: a registered secret never reaches a message or a log record."""

from __future__ import annotations

import logging
import secrets

from hy3d_client.redaction import REDACTED, protect_logs, redact, register_secrets


def test_registered_secrets_are_replaced_in_text():
    secret = secrets.token_hex(16)
    register_secrets([secret, None, ""])
    assert redact(f"key={secret}; again {secret}") == f"key={REDACTED}; again {REDACTED}"


def test_log_records_of_this_package_and_the_store_library_are_scrubbed(caplog):
    secret = "AK" + secrets.token_hex(10)
    register_secrets([secret])
    protect_logs()
    third_party = logging.getLogger("botocore.hy3d_redaction_test")  # a library logger created later
    with caplog.at_level(logging.DEBUG):
        third_party.debug("Authorization: Credential=%s/20260101/auto/s3", secret)
        logging.getLogger("hy3d_client.redaction_test").warning("secret is %s", secret)
        try:
            raise RuntimeError(f"failure carrying {secret}")
        except RuntimeError:
            logging.getLogger("hy3d_client").exception("failed")
    assert caplog.records and secret not in caplog.text
    assert "Credential=***" in caplog.text
