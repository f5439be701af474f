import base64
import io
import logging

import pytest
import structlog
from django.core.exceptions import FieldError
from django.core.management import call_command
from django.db import connection

from core.crypto import DecryptionError, KeyRing, keyring, token_key_id
from core.secrets import SecretDict, SecretStr
from tests.testapp.models import SecretNote

pytestmark = pytest.mark.django_db

KEY_ONE = "dGVzdC1rZXktb25lLWZvci1zeW5jc3RvcmUtdGVzdHM="
KEY_TWO = "dGVzdC1rZXktdHdvLWZvci1zeW5jc3RvcmUtdGVzdHM="
NEW_KEY = base64.b64encode(b"n" * 32).decode()


def raw_column(pk: int, column: str = "secret") -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM testapp_secretnote WHERE id = %s", [pk])  # noqa: S608
        return cursor.fetchone()[0]


def test_round_trip_text_and_json():
    note = SecretNote.objects.create(
        name="shopee", secret="shpk-live-123", payload={"partner_key": "abc", "shop_id": 42}
    )

    loaded = SecretNote.objects.get(pk=note.pk)

    assert loaded.secret == "shpk-live-123"
    assert loaded.payload == {"partner_key": "abc", "shop_id": 42}
    assert isinstance(loaded.secret, SecretStr)
    assert isinstance(loaded.payload, SecretDict)
    assert isinstance(loaded.payload["partner_key"], SecretStr)


def test_stored_value_is_ciphertext_with_key_id_and_fresh_nonce():
    one = SecretNote.objects.create(name="a", secret="same value")
    two = SecretNote.objects.create(name="b", secret="same value")

    raw_one, raw_two = raw_column(one.pk), raw_column(two.pk)

    assert "same value" not in raw_one
    assert raw_one.startswith(f"enc1:{keyring().primary_key_id}:")
    assert raw_one != raw_two  # a fresh 12-byte nonce per value
    nonce_one = base64.b64decode(raw_one.split(":")[2])[:12]
    nonce_two = base64.b64decode(raw_two.split(":")[2])[:12]
    assert nonce_one != nonce_two


def test_tampering_is_detected():
    note = SecretNote.objects.create(name="a", secret="token-xyz")
    prefix, key_id, blob = raw_column(note.pk).split(":")
    data = bytearray(base64.b64decode(blob))
    data[-1] ^= 0x01
    tampered = f"{prefix}:{key_id}:{base64.b64encode(bytes(data)).decode()}"
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE testapp_secretnote SET secret = %s WHERE id = %s", [tampered, note.pk]
        )

    with pytest.raises(DecryptionError, match="failed authentication"):
        SecretNote.objects.get(pk=note.pk)


def test_swapping_the_key_id_is_detected():
    ring = KeyRing([KEY_ONE, KEY_TWO])
    token = ring.encrypt(b"secret")
    other_id = ring.key_ids[1]
    swapped = token.replace(f":{ring.key_ids[0]}:", f":{other_id}:")
    with pytest.raises(DecryptionError):
        ring.decrypt(swapped)


def test_unknown_key_is_refused():
    token = KeyRing([NEW_KEY]).encrypt(b"x")
    with pytest.raises(DecryptionError, match="unknown key id"):
        KeyRing([KEY_ONE]).decrypt(token)


def test_encrypted_columns_cannot_be_searched():
    with pytest.raises(FieldError):
        list(SecretNote.objects.filter(secret="x"))
    assert SecretNote.objects.filter(secret__isnull=True).count() == 0


def test_rotation_re_encrypts_under_the_new_first_key(settings):
    notes = [
        SecretNote.objects.create(name=f"n{i}", secret=f"s{i}", payload={"i": i}) for i in range(5)
    ]
    SecretNote.objects.create(name="empty")  # NULLs are left alone
    old_id = keyring().primary_key_id
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, KEY_ONE, KEY_TWO]
    new_id = keyring().primary_key_id
    assert new_id != old_id

    dry = io.StringIO()
    call_command("rotate_encryption_keys", "--dry-run", stdout=dry)
    assert "would re-encrypt 5" in dry.getvalue()
    assert token_key_id(raw_column(notes[0].pk)) == old_id

    out = io.StringIO()
    call_command("rotate_encryption_keys", "--batch-size", "2", stdout=out)

    assert "testapp.SecretNote.secret: 5 values, re-encrypted 5" in out.getvalue()
    assert "testapp.SecretNote.payload: 5 values, re-encrypted 5" in out.getvalue()
    for note in notes:
        assert token_key_id(raw_column(note.pk)) == new_id
        assert token_key_id(raw_column(note.pk, "payload")) == new_id
    # Only the new key is needed now.
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]
    assert [n.secret for n in SecretNote.objects.exclude(name="empty")] == [
        f"s{i}" for i in range(5)
    ]
    again = io.StringIO()
    call_command("rotate_encryption_keys", stdout=again)
    assert "re-encrypted 0, 5 already current" in again.getvalue()


def test_rotation_reports_values_no_key_can_open(settings):
    SecretNote.objects.create(name="a", secret="x")
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]
    with pytest.raises(SystemExit) as exited:
        call_command("rotate_encryption_keys", stdout=io.StringIO(), stderr=io.StringIO())
    assert exited.value.code == 1


def test_decrypted_values_are_never_logged(log_lines):
    note = SecretNote.objects.create(
        name="a", secret="hunter2-token", payload={"client_secret": "s3cr3t", "region": "ap-zz-9"}
    )
    loaded = SecretNote.objects.get(pk=note.pk)
    logger = structlog.get_logger("test")

    logger.info(
        "channel.loaded", value=loaded.secret, creds=loaded.payload, region=loaded.payload["region"]
    )
    logging.getLogger("plain").info("stdlib %s", "ok", extra={"leak": loaded.secret})

    text = str(log_lines())
    assert "hunter2-token" not in text
    assert "s3cr3t" not in text
    assert "ap-zz-9" not in text  # even a harmless field of a secret is masked
    assert repr(loaded.secret) == "SecretStr('***')"


def test_generate_key_prints_a_usable_key():
    out = io.StringIO()
    call_command("rotate_encryption_keys", "--generate-key", stdout=out)
    KeyRing([out.getvalue().strip()])  # valid base64 of 32 bytes
