"""BURROW_SERVER_SECRET: the one secret every role of a cluster shares (each has a data dir of
its own, so the data dir's server.secret would differ per role), used instead of that file;
a placeholder or a short one is refused at start, as the operator key is."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from core.security import box_of_token, box_token, server_secret
from core.settings import MIN_KEY_LENGTH, Settings

SECRET = "5e7c0a9d1b3f4e6a8c2d0f1e3a5b7c9d"


def test_a_set_secret_is_the_one_every_role_uses_and_no_file_is_made(tmp_path: Path) -> None:
    """What core/services.py does with the setting. (tests/test_attacks.py's
    test_no_process_of_a_box_holds_a_server_secret runs it through `burrow serve`: the boxes'
    tokens derive from the set secret, and no box process holds it.)"""
    worker, gateway = tmp_path / "worker", tmp_path / "gateway"
    assert server_secret(worker, SECRET) == SECRET.encode()
    # What derives from it on one role holds on another, whose data dir is another disk.
    token = box_token(server_secret(worker, SECRET), "b_shared")
    assert box_of_token(server_secret(gateway, SECRET), token) == "b_shared"
    assert not (worker / "server.secret").exists() and not gateway.exists()
    # A data dir that already has a file (a machine moving to the setting) is overruled.
    made = server_secret(tmp_path / "old")
    assert server_secret(tmp_path / "old", SECRET) == SECRET.encode() != made


def test_unset_each_data_dir_makes_its_own_which_is_why_a_cluster_sets_it(
        tmp_path: Path) -> None:
    one, other = server_secret(tmp_path / "a"), server_secret(tmp_path / "b")
    assert one != other
    assert server_secret(tmp_path / "a") == one  # kept: a restart keeps its boxes' tokens
    assert box_of_token(other, box_token(one, "b_x")) is None


@pytest.mark.parametrize("secret", ["changeme", "SECRET", "password", "x" * (MIN_KEY_LENGTH - 1),
                                    ""])
def test_a_placeholder_or_short_secret_is_refused_saying_what_to_do(
        secret: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BURROW_SERVER_SECRET", secret)
    with pytest.raises(ValidationError) as caught:
        Settings()
    message = str(caught.value)
    assert "BURROW_SERVER_SECRET looks like a placeholder" in message
    assert "openssl rand -hex 32" in message
    assert secret not in message.replace("BURROW_SERVER_SECRET", "") or not secret


def test_a_refused_setting_shows_no_secret_with_its_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A start that fails on another setting prints its error, in a log or a terminal: the
    keys and the secret beside it stay out of it."""
    monkeypatch.setenv("BURROW_SERVER_SECRET", SECRET)
    monkeypatch.setenv("BURROW_OPERATOR_KEY", "op-" + "o" * 40)
    monkeypatch.setenv("BURROW_HOST_LISTEN", "everywhere")
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert "BURROW_HOST_LISTEN 'everywhere': use address:port" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert "o" * 40 not in str(caught.value)


def test_development_mode_takes_any_secret_as_it_takes_any_operator_key(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BURROW_SERVER_SECRET", "dev")
    monkeypatch.setenv("BURROW_DEV", "1")
    settings = Settings()
    assert settings.server_secret is not None
    assert settings.server_secret.get_secret_value() == "dev"


def test_the_secret_is_never_shown_with_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BURROW_SERVER_SECRET", SECRET)
    settings = Settings()
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings.model_dump())
