"""The tokens CLI through Click's test runner: create, bulk create, list and revoke."""
import hashlib
import re
import time

import pytest
import sqlalchemy as sa

from models import Token, db

READING = {"type": "humidity", "value": 40, "date_created": 100}
TOKEN = re.compile(r"cnry_[A-Za-z0-9_-]{43}")


@pytest.fixture
def application(make_app):
    return make_app(AUTH="tokens", TOKEN_CACHE_SECONDS=0)


@pytest.fixture
def tokens(application):
    """Run `flask tokens ...` on the application; return the Click result."""
    runner = application.test_cli_runner()

    def run(*args):
        return runner.invoke(args=["tokens", *args])

    return run


def stored_tokens(application):
    with application.app_context():
        return db.session.execute(sa.select(Token).order_by(Token.id)).scalars().all()


def post(application, token, device):
    headers = {"Authorization": f"Bearer {token}"}
    return application.test_client().post(f"/devices/{device}/readings/", json=READING, headers=headers).status_code


def listed(tokens):
    result = tokens("list")
    assert result.exit_code == 0, result.output
    return [line.split("\t") for line in result.stdout.splitlines()]


def test_create_device_token_prints_it_and_stores_only_its_digest(application, tokens, device):
    began = int(time.time())
    result = tokens("create", "--kind", "device", "--device", device, "--label", "kitchen sensor")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert TOKEN.fullmatch(token)
    (row,) = stored_tokens(application)
    assert row.digest == hashlib.sha256(token.encode()).hexdigest()
    assert (row.kind, row.device_uuid, row.label, row.revoked_at) == ("device", device, "kitchen sensor", None)
    assert began <= row.created_at <= time.time()
    assert token[5:] not in repr([getattr(row, column.key) for column in Token.__table__.columns])
    assert post(application, token, device) == 201
    assert post(application, token, device + "-other") == 403


@pytest.mark.parametrize("kind, allowed, refused", [("ingest", "POST", "GET"), ("read", "GET", "POST")])
def test_create_ingest_and_read_tokens(application, tokens, device, kind, allowed, refused):
    result = tokens("create", "--kind", kind)
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    (row,) = stored_tokens(application)
    assert (row.kind, row.device_uuid, row.label) == (kind, None, None)
    client = application.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    for method, expected in ((allowed, {"POST": 201, "GET": 200}[allowed]), (refused, 403)):
        body = READING if method == "POST" else None
        response = client.open(f"/devices/{device}/readings/", method=method, json=body, headers=headers)
        assert response.status_code == expected


@pytest.mark.parametrize(
    "args",
    [
        ["--kind", "device"],
        ["--kind", "device", "--device", "a", "--devices-file", "-"],
        ["--kind", "ingest", "--device", "a"],
        ["--kind", "read", "--devices-file", "-"],
        ["--kind", "admin"],
        ["--device", "a"],
        ["--kind", "device", "--device", "a b"],
        ["--kind", "device", "--device", "x" * 65],
        ["--kind", "read", "--label", "two\nlines"],
        ["--kind", "read", "--label", "tab\there"],
        ["--kind", "read", "--label", "x" * 201],
    ],
)
def test_create_refuses_bad_arguments_and_stores_nothing(application, tokens, args):
    result = tokens("create", *args)
    assert result.exit_code == 2
    assert "Error" in result.output and not TOKEN.search(result.output)
    assert stored_tokens(application) == []


def test_bulk_create_prints_csv_of_working_tokens(application, tokens, tmp_path):
    devices = [f"home-{n}:sensor" for n in range(40)]
    path = tmp_path / "devices.txt"
    path.write_text("\n".join(devices[:20]) + "\n\n  " + "\n".join(devices[20:]) + "  \n")
    result = tokens("create", "--kind", "device", "--devices-file", str(path), "--label", "batch 1")
    assert result.exit_code == 0, result.output
    header, *lines = result.stdout.splitlines()
    assert header == "device_uuid,token"
    pairs = [line.split(",") for line in lines]
    assert [device for device, _ in pairs] == devices
    assert all(TOKEN.fullmatch(token) for _, token in pairs) and len({token for _, token in pairs}) == 40
    rows = stored_tokens(application)
    assert len(rows) == 40 and {row.label for row in rows} == {"batch 1"}
    assert {(row.device_uuid, row.digest) for row in rows} == {
        (device, hashlib.sha256(token.encode()).hexdigest()) for device, token in pairs}
    (first_device, first_token), (second_device, _) = pairs[:2]
    assert post(application, first_token, first_device) == 201
    assert post(application, first_token, second_device) == 403


@pytest.mark.parametrize(
    "content, named",
    [
        ("good-1\nbad device\ngood-2\n", "line 2"),
        ("good-1\n" + "x" * 65 + "\n", "line 2"),
        ("good-1\ngood-2\ngood-1\n", "line 3"),
        ("\n\n", "no device"),
        ("", "no device"),
    ],
)
def test_bulk_create_refuses_a_bad_file_whole(application, tokens, tmp_path, content, named):
    path = tmp_path / "devices.txt"
    path.write_text(content)
    result = tokens("create", "--kind", "device", "--devices-file", str(path))
    assert result.exit_code == 1
    assert named in result.output and not TOKEN.search(result.output)
    assert stored_tokens(application) == []


def test_list_shows_one_line_per_token_and_never_the_token(application, tokens, device):
    created = [tokens("create", "--kind", "device", "--device", device, "--label", "porch").stdout.strip(),
               tokens("create", "--kind", "ingest").stdout.strip(),
               tokens("create", "--kind", "read", "--label", "wall screen").stdout.strip()]
    lines = listed(tokens)
    ids = [str(row.id) for row in stored_tokens(application)]
    assert [line[0] for line in lines] == ids
    assert [line[1:4] for line in lines] == [["device", device, "porch"], ["ingest", "-", "-"],
                                             ["read", "-", "wall screen"]]
    for line in lines:
        assert len(line) == 6 and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", line[4]) and line[5] == "-"
    output = tokens("list").output
    assert not any(token[5:] in output for token in created)


def test_revoke_refuses_the_token_and_shows_in_list(application, tokens, device):
    token = tokens("create", "--kind", "device", "--device", device).stdout.strip()
    assert post(application, token, device) == 201
    (token_id,) = [line[0] for line in listed(tokens)]
    result = tokens("revoke", token_id)
    assert result.exit_code == 0 and f"Revoked token {token_id}" in result.output
    assert post(application, token, device) == 401
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", listed(tokens)[0][5])
    again = tokens("revoke", token_id)
    assert again.exit_code == 0 and "already revoked" in again.output


def test_revoke_leaves_other_tokens_alone(application, tokens, device):
    kept = tokens("create", "--kind", "device", "--device", device).stdout.strip()
    gone = tokens("create", "--kind", "device", "--device", device).stdout.strip()
    assert tokens("revoke", listed(tokens)[1][0]).exit_code == 0
    assert (post(application, kept, device), post(application, gone, device)) == (201, 401)


@pytest.mark.parametrize("token_id", ["999", "0", "-1", "x"])
def test_revoke_unknown_id_fails(application, tokens, token_id):
    tokens("create", "--kind", "read")
    result = tokens("revoke", token_id)
    assert result.exit_code != 0
    assert [row.revoked_at for row in stored_tokens(application)] == [None]
