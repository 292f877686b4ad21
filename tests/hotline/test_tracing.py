"""Tracing: offline IP → AS, AS name, country from .mmdb files and a CIDR CSV; CDN fronting; the
abuse-contact directory (import, most specific domain, the AS); RDAP against a fake server on loopback."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import random
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.testclient import TestClient
from mmdb_writer import MMDBWriter
from netaddr import IPSet
from rich.console import Console
from sqlalchemy import func, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from seawall.auth import service as auth_service
from seawall.auth.models import AuditEvent
from seawall.auth.permissions import SYSTEM
from seawall.config import Settings
from seawall.db import make_sessionmaker, transaction
from seawall.hotline import tracedata, tracing
from seawall.hotline.models import Host
from seawall.hotline.tracing import Trace
from servers import serve

# Documentation ranges (RFC 5737, RFC 3849) and private AS numbers (RFC 6996): nothing real.
CIDR_CSV = """\
# the hotline's own table
cidr,asn,as_name,country
192.0.2.0/24,64500,Example Hosting,GB
192.0.2.128/25,64501,Example Resold,NL
192.0.2.192/26,,,IE
2001:db8::/32,64510,Example Six,DE
2001:db8:1::/48,64511,Example Six Sub,FR
"""

CONTACTS_CSV = """\
asn,domain,name,abuse_email,api_endpoint,language
64500,,Example Hosting Ltd,abuse@hosting.example,,en
,example.org,Example Org,abuse@example.org,,en
,pics.example.org,Example Pictures,takedown@pics.example.org,https://api.pics.example.org/notices,de
64501,example.org,Example Org on its reseller,abuse-reseller@example.org,,en
"""


@pytest.fixture(autouse=True)
def _fresh_file_caches() -> Iterator[None]:
    """Every test opens its own files (the caches are per process)."""
    for cache in (tracedata.MMDB_FILES, tracedata.CIDR_FILES, tracing.rdap.BOOTSTRAP_FILES):
        cache.clear()
    yield
    for cache in (tracedata.MMDB_FILES, tracedata.CIDR_FILES, tracing.rdap.BOOTSTRAP_FILES):
        cache.clear()


def _offline(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(home=tmp_path / "home", secret_key="k", **kw)


def _write_mmdb(path: Path, networks: dict[str, dict[str, Any]], kind: str) -> Path:
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type=kind, languages=["en"], description=kind)
    for network, record in networks.items():
        writer.insert_network(IPSet([network]), record)
    # As geoipupdate does: write beside, then rename over (the reader of the old file keeps it).
    partial = path.with_name(path.name + ".partial")
    writer.to_db_file(str(partial))
    os.replace(partial, path)
    return path


def _geolite_files(tmp_path: Path) -> tuple[Path, Path]:
    country = _write_mmdb(
        tmp_path / "GeoLite2-Country.mmdb",
        {
            "198.51.100.0/24": {"country": {"iso_code": "GB"}, "registered_country": {"iso_code": "GB"}},
            "198.51.100.128/25": {"registered_country": {"iso_code": "US"}},  # anycast: no located country
            "203.0.113.0/24": {"country": {"iso_code": "NL"}},
            "2001:db8::/32": {"country": {"iso_code": "DE"}},
        },
        "GeoLite2-Country",
    )
    asn = _write_mmdb(
        tmp_path / "GeoLite2-ASN.mmdb",
        {
            "198.51.100.0/24": {"autonomous_system_number": 64496, "autonomous_system_organization": "Meadow Net"},
            "203.0.113.0/25": {"autonomous_system_number": 13335, "autonomous_system_organization": "CLOUDFLARENET"},
            "2001:db8::/33": {"autonomous_system_number": 64497, "autonomous_system_organization": "Lighthouse V6"},
        },
        "GeoLite2-ASN",
    )
    return country, asn


def test_mmdb_country_and_asn_files_exact_lookups_and_cdn_flag(tmp_path: Path) -> None:
    country, asn = _geolite_files(tmp_path)
    settings = _offline(tmp_path, trace_mmdb_country=country, trace_mmdb_asn=asn)
    cases = {
        "198.51.100.7": Trace("198.51.100.7", 64496, "Meadow Net", "GB"),
        "198.51.100.200": Trace("198.51.100.200", 64496, "Meadow Net", "US"),  # registered country, none located
        "::ffff:198.51.100.7": Trace("198.51.100.7", 64496, "Meadow Net", "GB"),  # IPv4-mapped read as IPv4
        "203.0.113.9": Trace("203.0.113.9", 13335, "CLOUDFLARENET", "NL", behind_cdn=True),
        "203.0.113.200": Trace("203.0.113.200", None, None, "NL"),  # the AS file has no answer there
        "198.51.101.1": Trace("198.51.101.1"),  # outside every range
        "2001:db8::1": Trace("2001:db8::1", 64497, "Lighthouse V6", "DE"),
        "2001:DB8:8000::1": Trace("2001:db8:8000::1", None, None, "DE"),
        "2001:db9::1": Trace("2001:db9::1"),
    }
    for address, expected in cases.items():
        assert tracing.trace_address(settings, address) == expected, address
    # The CDN list is a setting: without Cloudflare in it, nothing is flagged.
    not_cdn = _offline(tmp_path, trace_mmdb_country=country, trace_mmdb_asn=asn, trace_cdn_asns=[64496])
    assert tracing.trace_address(not_cdn, "203.0.113.9").behind_cdn is False
    assert tracing.trace_address(not_cdn, "198.51.100.7").behind_cdn is True
    assert tracing.data_problems(settings) == []


def test_one_combined_file_and_nothing_configured(tmp_path: Path) -> None:
    combined = _write_mmdb(
        tmp_path / "country_asn.mmdb",
        {
            "192.0.2.0/24": {"country": "SE", "asn": "AS64502", "as_name": "Combined AB"},
            "2001:db8:5::/48": {"country_code": "fi", "asn": 64503, "as_name": "Combined Oy"},
        },
        "ipinfo country_asn",
    )
    for settings in (_offline(tmp_path, trace_mmdb_country=combined), _offline(tmp_path, trace_mmdb_asn=combined)):
        assert tracing.trace_address(settings, "192.0.2.1") == Trace("192.0.2.1", 64502, "Combined AB", "SE")
        assert tracing.trace_address(settings, "2001:db8:5::9") == Trace("2001:db8:5::9", 64503, "Combined Oy", "FI")
    nothing = _offline(tmp_path)
    assert tracing.trace_address(nothing, "192.0.2.1") == Trace("192.0.2.1")
    assert tracing.trace_address(nothing, "2001:db8::1") == Trace("2001:db8::1")
    with pytest.raises(ValueError, match=r"^not an IP address: 'example\.org'$"):
        tracing.trace_address(nothing, "example.org")


def test_cidr_file_most_specific_range_wins_and_speaks_before_the_mmdb(tmp_path: Path) -> None:
    cidr = tmp_path / "ranges.csv"
    cidr.write_text(CIDR_CSV)
    settings = _offline(tmp_path, trace_cidr_file=cidr)
    cases = {
        "192.0.2.0": Trace("192.0.2.0", 64500, "Example Hosting", "GB"),
        "192.0.2.127": Trace("192.0.2.127", 64500, "Example Hosting", "GB"),
        "192.0.2.128": Trace("192.0.2.128", 64501, "Example Resold", "NL"),
        "192.0.2.191": Trace("192.0.2.191", 64501, "Example Resold", "NL"),
        "192.0.2.192": Trace("192.0.2.192", None, None, "IE"),  # the innermost range, empty cells and all
        "192.0.2.255": Trace("192.0.2.255", None, None, "IE"),
        "192.0.3.0": Trace("192.0.3.0"),
        "192.0.1.255": Trace("192.0.1.255"),
        "2001:db8::1": Trace("2001:db8::1", 64510, "Example Six", "DE"),
        "2001:db8:1:ffff::1": Trace("2001:db8:1:ffff::1", 64511, "Example Six Sub", "FR"),
        "2001:db8:2::1": Trace("2001:db8:2::1", 64510, "Example Six", "DE"),
        "2001:db9::": Trace("2001:db9::"),
    }
    for address, expected in cases.items():
        assert tracing.trace_address(settings, address) == expected, address

    # With an AS file too: the CIDR file's AS stands where it has one; where it has none, the AS and
    # its name come together from the file that has them (never one's number with another's name).
    asn = _write_mmdb(
        tmp_path / "asn.mmdb",
        {"192.0.2.0/24": {"autonomous_system_number": 64499, "autonomous_system_organization": "Upstream"}},
        "GeoLite2-ASN",
    )
    both = _offline(tmp_path, trace_cidr_file=cidr, trace_mmdb_asn=asn)
    assert tracing.trace_address(both, "192.0.2.1") == Trace("192.0.2.1", 64500, "Example Hosting", "GB")
    assert tracing.trace_address(both, "192.0.2.200") == Trace("192.0.2.200", 64499, "Upstream", "IE")


def test_cidr_table_matches_a_brute_force_search() -> None:
    """Random nested and disjoint blocks: the flattened table answers like a scan for the longest prefix."""
    rng = random.Random(7)
    lines = ["cidr,asn"]
    blocks: list[tuple[ipaddress.IPv4Network, int]] = []
    seen = set()
    for asn in range(64512, 64512 + 300):
        prefix = rng.choice([8, 12, 16, 20, 24, 28, 30, 32])
        network = ipaddress.IPv4Network((rng.choice([10, 11]) << 24 | rng.getrandbits(24), prefix), strict=False)
        if network in seen:
            continue
        seen.add(network)
        blocks.append((network, asn))
        lines.append(f"{network},{asn}")
    import io

    table = tracedata.CidrTable.read(io.BytesIO("\n".join(lines).encode()), "random.csv")
    probes = [ipaddress.IPv4Address(rng.choice([10, 11, 12]) << 24 | rng.getrandbits(24)) for _ in range(2000)]
    probes += [n.network_address for n, _ in blocks] + [n.broadcast_address for n, _ in blocks]
    probes += [n.network_address - 1 for n, _ in blocks] + [n.broadcast_address + 1 for n, _ in blocks]
    for probe in probes:
        covering = [(n.prefixlen, asn) for n, asn in blocks if probe in n]
        expected = max(covering)[1] if covering else None
        found = table.lookup(probe)
        assert (found.asn if found else None) == expected, probe


def test_bad_cidr_file_is_refused_whole_naming_the_line_then_reloaded_when_fixed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cidr = tmp_path / "ranges.csv"
    settings = _offline(tmp_path, trace_cidr_file=cidr)
    for body, problem in [
        ("cidr,asn\n192.0.2.0/24,64500\n192.0.2.1/24,64501\n", "line 3: 192.0.2.1/24 has host bits set"),
        ("cidr,asn\n192.0.2.0/24,64500\n192.0.2.0/24,64501\n", "line 3: 192.0.2.0/24 is listed twice (line 2)"),
        ("cidr,asn,country\n192.0.2.0/24,64500,Britain\n", "line 2: country 'Britain' is not a two-letter"),
        ("cidr,asn\n192.0.2.0/24,AS-x\n", "line 2: AS number 'AS-x' is not a number from 1 to 4294967295"),
        ("cidr,asn,owner\n192.0.2.0/24,64500,x\n", "line 1: unknown column(s) owner; columns are cidr,asn"),
        ("cidr,asn\n192.0.2.0/24\n", "line 2: expected 2 fields, got 1"),
        ("cidr\n::ffff:192.0.2.0/120\n", "line 2: write IPv4 ranges as IPv4, not IPv4-mapped IPv6"),
    ]:
        cidr.write_text(body)
        os.utime(cidr, ns=(1, random.getrandbits(40)))  # a new version, even within one clock tick
        caplog.clear()
        assert tracing.trace_address(settings, "192.0.2.9") == Trace("192.0.2.9")
        [reported] = tracing.data_problems(settings)
        assert reported.startswith(f"{cidr}: {problem}"), reported
        assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
            f"tracing: the CIDR file is not used: {reported}"
        ]
    cidr.write_text(CIDR_CSV)
    assert tracing.trace_address(settings, "192.0.2.9").asn == 64500
    assert tracing.data_problems(settings) == []
    missing = _offline(tmp_path, trace_mmdb_asn=tmp_path / "absent.mmdb")
    assert tracing.trace_address(missing, "192.0.2.9") == Trace("192.0.2.9")
    assert tracing.data_problems(missing) == [f"{tmp_path / 'absent.mmdb'}: No such file or directory"]
    garbage = tmp_path / "garbage.mmdb"
    garbage.write_bytes(b"not a database")
    assert tracing.data_problems(_offline(tmp_path, trace_mmdb_country=garbage))[0].startswith(
        f"{garbage}: not a readable MaxMind DB file"
    )


def test_an_mmdb_file_replaced_is_read_again(tmp_path: Path) -> None:
    path = _write_mmdb(tmp_path / "asn.mmdb", {"192.0.2.0/24": {"autonomous_system_number": 64500}}, "GeoLite2-ASN")
    settings = _offline(tmp_path, trace_mmdb_asn=path)
    assert tracing.trace_address(settings, "192.0.2.1").asn == 64500
    first = tracedata.MMDB_FILES.get(path)
    assert tracedata.MMDB_FILES.get(path) is first  # opened once
    _write_mmdb(path, {"192.0.2.0/24": {"autonomous_system_number": 64501}}, "GeoLite2-ASN")
    assert tracing.trace_address(settings, "192.0.2.1").asn == 64501


# ---- the directory --------------------------------------------------------------------------------


def _import(session: Session, body: str, name: str = "contacts.csv") -> tracing.ImportResult:
    import io

    return tracing.import_contacts_file(session, SYSTEM, io.BytesIO(body.encode()), source_name=name)


def test_directory_import_is_an_idempotent_upsert_with_audit_events(engine: Engine) -> None:
    sessions = make_sessionmaker(engine)
    with transaction(sessions) as session:
        first = _import(session, CONTACTS_CSV)
    assert (first.added, first.updated, first.unchanged) == (4, 0, 0)
    with transaction(sessions) as session:
        again = _import(session, CONTACTS_CSV)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 4)
    changed = CONTACTS_CSV.replace("Example Org,abuse@example.org", "Example Org,report@example.org")
    with transaction(sessions) as session:
        third = _import(session, changed + ",ÉXAMPLE.net.,Bücher,abuse@xn--bcher-kva.example,,PT-BR\n")
    assert (third.added, third.updated, third.unchanged, third.changed) == (
        1,
        1,
        3,
        ["example.org", "xn--xample-9ua.net"],
    )
    with sessions() as session:
        rows = session.execute(
            select(
                Host.asn, Host.domain, Host.name, Host.abuse_email, Host.api_endpoint, Host.language, Host.source
            ).order_by(Host.id)
        ).all()
        assert [tuple(r) for r in rows] == [
            (64500, None, "Example Hosting Ltd", "abuse@hosting.example", None, "en", "import"),
            (None, "example.org", "Example Org", "report@example.org", None, "en", "import"),
            (
                None,
                "pics.example.org",
                "Example Pictures",
                "takedown@pics.example.org",
                "https://api.pics.example.org/notices",
                "de",
                "import",
            ),
            (64501, "example.org", "Example Org on its reseller", "abuse-reseller@example.org", None, "en", "import"),
            (None, "xn--xample-9ua.net", "Bücher", "abuse@xn--bcher-kva.example", None, "pt-br", "import"),
        ]
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "hosts.import")).all()
        assert [(e.details["added"], e.details["updated"], e.details["unchanged"]) for e in events] == [
            (4, 0, 0),
            (0, 0, 4),
            (1, 1, 3),
        ]
        assert events[0].details["file"] == "contacts.csv" and len(events[0].details["sha256"]) == 64


def test_directory_import_with_a_bad_line_names_it_and_imports_nothing(engine: Engine) -> None:
    sessions = make_sessionmaker(engine)
    for body, errors in [
        (
            CONTACTS_CSV + "notanumber,,X,a@b.example,,en\n,*.example.com,Y,a@b.example,,en\n",
            [
                "line 6: AS number 'notanumber' is not a number from 1 to 4294967295",
                "line 7: write 'example.com', not '*.example.com': a domain's entry covers its subdomains",
            ],
        ),
        (CONTACTS_CSV + "64500,,Again,x@y.example,,en\n", ["line 6: AS64500 is listed twice (line 2)"]),
        (CONTACTS_CSV + ",,Nobody,x@y.example,,en\n", ["line 6: a contact names an AS number, a domain or both"]),
        (CONTACTS_CSV + "64502,,Mute,,,en\n", ["line 6: a contact needs an abuse_email or an api_endpoint"]),
        (CONTACTS_CSV + "64502,,Bad mail,abuse at x,,en\n", ["line 6: abuse_email 'abuse at x' is not an email"]),
        (
            CONTACTS_CSV + "64502,,Creds,,https://user.example:p@api.example/x,en\n",
            ["line 6: api_endpoint must not carry credentials"],
        ),
        (CONTACTS_CSV + "64502,,FTP,,ftp://api.example/x,en\n", ["line 6: api_endpoint 'ftp://api.example/x' is not"]),
        (CONTACTS_CSV + "64502,192.0.2.1,Addr,a@b.example,,en\n", ["line 6: '192.0.2.1' is an address, not a"]),
        (CONTACTS_CSV + "64502,,Lang,a@b.example,,english\n", ["line 6: language 'english' is not a language tag"]),
        ("asn,domain,name,email\n", ["line 1: unknown column(s) email; columns are asn,domain,name,abuse_email"]),
        ("asn,domain\n64500,x.example\n", ["line 1: missing column(s) name"]),
        ("", ["line 1: no header line naming the columns (asn,domain,name,abuse_email,api_endpoint,language)"]),
    ]:
        with pytest.raises(tracing.InvalidContacts) as refused, transaction(sessions) as session:
            _import(session, body)
        assert len(refused.value.errors) == len(errors), refused.value.errors
        for error, expected in zip(refused.value.errors, errors, strict=True):
            assert str(error).startswith(expected), (str(error), expected)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Host)) == 0
        assert session.scalar(select(func.count()).where(AuditEvent.action == "hosts.import")) == 0


def test_host_for_prefers_the_most_specific_domain_then_the_as(engine: Engine) -> None:
    sessions = make_sessionmaker(engine)
    with transaction(sessions) as session:
        _import(session, CONTACTS_CSV)
    with sessions() as session:

        def name(asn: int | None, domain: str | None) -> str | None:
            host = tracing.host_for(session, asn, domain)
            return host.name if host is not None else None

        assert name(64500, "a.b.pics.example.org") == "Example Pictures"
        assert name(None, "PICS.Example.org.") == "Example Pictures"
        assert name(64500, "www.example.org") == "Example Org"  # the domain before the AS
        assert name(64501, "www.example.org") == "Example Org on its reseller"  # that domain on that AS first
        assert name(64501, "pics.example.org") == "Example Pictures"  # a more specific domain still wins
        assert name(64500, "other.example") == "Example Hosting Ltd"
        assert name(64500, None) == "Example Hosting Ltd"
        assert name(64500, "192.0.2.1") == "Example Hosting Ltd"  # an address is no domain
        assert name(64501, None) is None  # an AS known only together with a domain
        assert name(None, "example.com") is None
        assert name(None, None) is None


def test_directory_keys_without_an_as_or_a_domain_are_unique_in_the_database(engine: Engine) -> None:
    """The (asn, domain) constraint never fires on a NULL: the partial indexes do."""
    sessions = make_sessionmaker(engine)
    for first, second in [
        ({"asn": 64500}, {"asn": 64500}),
        ({"domain": "example.org"}, {"domain": "example.org"}),
        (
            {"range_start": "0" * 32, "range_end": "1" * 32, "source": "rdap"},
            {"range_start": "0" * 32, "range_end": "1" * 32, "source": "rdap"},
        ),
    ]:
        with transaction(sessions) as session:
            session.add(Host(name="first", abuse_email="a@b.example", **first))
        with pytest.raises(IntegrityError), transaction(sessions) as session:
            session.add(Host(name="second", abuse_email="a@b.example", **second))
        with transaction(sessions) as session:
            session.execute(text("DELETE FROM hotline_hosts"))
    with transaction(sessions) as session:  # RDAP rows have neither: many may exist
        session.add_all(Host(name=f"net {i}", source="rdap") for i in range(3))
    if engine.dialect.name == "postgresql":
        with engine.connect() as c:
            collations = c.execute(
                text(
                    "SELECT column_name, collation_name FROM information_schema.columns "
                    "WHERE table_name = 'hotline_hosts' AND column_name LIKE 'range_%' ORDER BY column_name"
                )
            ).all()
        assert [tuple(r) for r in collations] == [("range_end", "C"), ("range_start", "C")]


def test_hosts_cli_import_ls_show_trace(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from seawall.cli import app as cli_app
    from seawall.config import reset_settings
    from seawall.hotline import cli as hotline_cli

    cidr = tmp_path / "ranges.csv"
    cidr.write_text(CIDR_CSV)
    monkeypatch.setenv("SEAWALL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SEAWALL_DATABASE_URL", database_url)
    monkeypatch.setenv("SEAWALL_SECRET_KEY", "cli-test-secret")
    monkeypatch.setenv("SEAWALL_TRACE_CIDR_FILE", str(cidr))
    monkeypatch.setenv("SEAWALL_TRACE_CDN_ASNS", "[64501]")
    monkeypatch.setattr(hotline_cli, "out", Console(width=250))  # tables unwrapped
    reset_settings()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # the command points logging at the runner's stream
    try:
        runner = CliRunner()
        contacts = tmp_path / "contacts.csv"
        contacts.write_text(CONTACTS_CSV)
        done = runner.invoke(cli_app, ["hosts", "import", str(contacts)])
        assert done.exit_code == 0, done.output
        assert "contacts.csv: 4 added, 0 updated, 0 unchanged" in done.output
        bad = tmp_path / "bad.csv"
        bad.write_text(CONTACTS_CSV + "x,,y,z,,en\n")
        refused = runner.invoke(cli_app, ["hosts", "import", str(bad)])
        assert refused.exit_code == 2
        assert "line 6: AS number 'x' is not a number" in refused.output and "nothing was imported" in refused.output
        listed = runner.invoke(cli_app, ["hosts", "ls"])
        assert listed.exit_code == 0 and "Example Pictures" in listed.output and "AS64500" in listed.output
        shown = runner.invoke(cli_app, ["hosts", "show", "www.pics.example.org"])
        assert shown.exit_code == 0, shown.output
        assert "a case there gets:" in shown.output and "takedown@pics.example.org" in shown.output
        assert "Example Hosting Ltd" in runner.invoke(cli_app, ["hosts", "show", "AS64500"]).output
        assert runner.invoke(cli_app, ["hosts", "show", "nowhere.example"]).exit_code == 2
        traced = runner.invoke(cli_app, ["hosts", "trace", "192.0.2.130", "--domain", "www.example.org"])
        assert traced.exit_code == 0, traced.output
        assert json.loads(traced.stdout.splitlines()[0]) == {
            "address": "192.0.2.130",
            "asn": 64501,
            "as_name": "Example Resold",
            "country": "NL",
            "behind_cdn": True,
        }
        assert "Example Org on its reseller" in traced.output
        assert runner.invoke(cli_app, ["hosts", "trace", "nonsense"]).exit_code == 2
    finally:
        root.handlers[:], root.level = handlers, level
        reset_settings()


def test_hosts_api_is_for_admins(client: TestClient, db: Session, engine: Engine) -> None:
    with transaction(make_sessionmaker(engine)) as session:
        _import(session, CONTACTS_CSV)
    admin = auth_service.create_api_key(db, SYSTEM, name="admin-key", scopes=["admin"])
    analyst = auth_service.create_api_key(db, SYSTEM, name="analyst-key", scopes=["review", "reports:read"])
    db.commit()
    listed = client.get("/v1/hosts", headers={"authorization": f"Bearer {admin.secret}"})
    assert listed.status_code == 200
    hosts = listed.json()["hosts"]
    assert [(h["asn"], h["domain"], h["source"]) for h in hosts] == [
        (64500, None, "import"),
        (64501, "example.org", "import"),
        (None, "example.org", "import"),
        (None, "pics.example.org", "import"),
    ]  # by AS (the AS's own entry first), then by domain
    one = client.get(f"/v1/hosts/{hosts[3]['id']}", headers={"authorization": f"Bearer {admin.secret}"}).json()
    assert (one["name"], one["api_endpoint"], one["language"]) == (
        "Example Pictures",
        "https://api.pics.example.org/notices",
        "de",
    )
    assert client.get("/v1/hosts/999999", headers={"authorization": f"Bearer {admin.secret}"}).status_code == 404
    assert client.get("/v1/hosts", headers={"authorization": f"Bearer {analyst.secret}"}).status_code == 403
    assert client.get("/v1/hosts?source=rdap", headers={"authorization": f"Bearer {admin.secret}"}).json() == {
        "hosts": []
    }


# ---- RDAP against a fake server ------------------------------------------------------------------


def _arin_like_network(start: str, end: str, name: str, abuse: str | None) -> dict[str, Any]:
    """An ip network answer shaped like ARIN's: the abuse contact nested in the registrant."""
    nested: list[dict[str, Any]] = []
    if abuse:
        nested.append(
            {
                "objectClassName": "entity",
                "handle": "ABUSE-1",
                "roles": ["abuse"],
                "vcardArray": [
                    "vcard",
                    [["version", {}, "text", "4.0"], ["fn", {}, "text", "Abuse desk"], ["email", {}, "text", abuse]],
                ],
            }
        )
    return {
        "objectClassName": "ip network",
        "handle": f"NET-{name}",
        "startAddress": start,
        "endAddress": end,
        "ipVersion": "v4" if "." in start else "v6",
        "name": name,
        "entities": [
            {
                "objectClassName": "entity",
                "handle": "TECH-1",
                "roles": ["technical"],
                "vcardArray": ["vcard", [["email", {}, "text", "noc@meadow.example"]]],
            },
            {
                "objectClassName": "entity",
                "handle": "ORG-1",
                "roles": ["registrant"],
                "vcardArray": ["vcard", [["version", {}, "text", "4.0"], ["fn", {}, "text", f"{name} Hosting"]]],
                "entities": nested,
            },
        ],
    }


class FakeRdap:
    """Two registries on loopback: the first refers one block to the second, as RIRs do."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.lock = threading.Lock()
        self.second_url = ""
        self.meadow = "198.51.100.0/24"  # the network the first registry answers for MEADOW
        self.first = FastAPI()
        self.second = FastAPI()

        @self.first.get("/rdap/ip/{address:path}")
        def first(address: str, request: Request) -> Any:
            with self.lock:
                self.asked.append(f"first {address}")
            ip = ipaddress.ip_address(address)
            if ip in ipaddress.ip_network(self.meadow):
                network = ipaddress.ip_network(self.meadow)
                return JSONResponse(
                    _arin_like_network(
                        str(network.network_address), str(network.broadcast_address), "MEADOW", "abuse@meadow.example"
                    ),
                    media_type="application/rdap+json",
                )
            if ip in ipaddress.ip_network("203.0.113.0/24"):  # another registry's: a referral
                return RedirectResponse(f"{self.second_url}/ip/{address}", status_code=301)
            if ip in ipaddress.ip_network("2001:db8::/32"):
                # Claims far more than the bootstrap gave this server: clipped when cached.
                return JSONResponse(
                    _arin_like_network("2001::", "2001:fff:ffff:ffff:ffff:ffff:ffff:ffff", "WIDE", None)
                )
            return JSONResponse({"errorCode": 404, "title": "not found"}, status_code=404)

        @self.second.get("/ip/{address:path}")
        def second(address: str) -> Any:
            with self.lock:
                self.asked.append(f"second {address}")
            return JSONResponse(
                _arin_like_network("203.0.113.0", "203.0.113.127", "LIGHTHOUSE", "mailto:abuse@lighthouse.example")
            )


@pytest.fixture
def rdap_servers(tmp_path: Path) -> Iterator[tuple[FakeRdap, Path]]:
    fake = FakeRdap()
    with serve(fake.first) as first_url, serve(fake.second) as second_url:
        fake.second_url = second_url
        bootstrap = tmp_path / "rdap-bootstrap"
        bootstrap.mkdir()
        services_v4 = [[["198.51.100.0/24", "203.0.113.0/24", "192.0.2.0/24"], [f"{first_url}/rdap/"]]]
        services_v6 = [[["2001:db8::/32"], [f"{first_url}/rdap"]]]
        for name, services in (("ipv4.json", services_v4), ("ipv6.json", services_v6)):
            (bootstrap / name).write_text(
                json.dumps({"version": "1.0", "publication": "2026-01-01T00:00:00Z", "services": services})
            )
        yield fake, bootstrap


def test_rdap_finds_caches_and_refreshes_abuse_contacts_on_loopback(
    settings: Settings, engine: Engine, rdap_servers: tuple[FakeRdap, Path]
) -> None:
    fake, bootstrap = rdap_servers
    sessions = make_sessionmaker(engine)
    on = settings.model_copy(
        update={"trace_rdap": True, "trace_rdap_bootstrap": bootstrap, "fetch_allow_networks": ["127.0.0.0/8"]}
    )

    def contact(address: str, asn: int | None = None, domain: str | None = None, s: Settings = on) -> Host | None:
        return tracing.contact_for(sessions, s, Trace(address, asn), domain)

    # Off (the default): no request at all.
    assert contact("198.51.100.7", s=settings) is None
    assert fake.asked == []

    meadow = contact("198.51.100.7")
    assert meadow is not None
    assert (meadow.source, meadow.network, meadow.name, meadow.abuse_email) == (
        "rdap",
        "198.51.100.0/24",
        "MEADOW Hosting",
        "abuse@meadow.example",
    )
    again = contact("198.51.100.200")  # the same network: from the cache
    assert again is not None and again.id == meadow.id
    assert fake.asked == ["first 198.51.100.7"]

    # A referral to another registry, followed (and checked) by the safe fetcher; "mailto:" dropped.
    lighthouse = contact("203.0.113.5")
    assert lighthouse is not None
    assert (lighthouse.network, lighthouse.abuse_email) == ("203.0.113.0/25", "abuse@lighthouse.example")
    assert fake.asked[-2:] == ["first 203.0.113.5", "second 203.0.113.5"]

    # An answer naming no abuse contact is kept too, for the network clipped to the server's block.
    wide = contact("2001:db8::5")
    assert wide is not None and (wide.network, wide.abuse_email, wide.name) == ("2001:db8::/32", None, "WIDE Hosting")
    assert contact("2001:db8:ffff::1") is not None and fake.asked[-1] == "first 2001:db8::5"

    # The directory comes first: with an entry for the AS, RDAP is not asked.
    with transaction(sessions) as session:
        _import(session, CONTACTS_CSV)
    asked = len(fake.asked)
    directory = contact("198.51.100.7", asn=64500)
    assert directory is not None and directory.source == "import" and len(fake.asked) == asked

    # Older than the cache's days: asked again; the row is updated in place.
    with transaction(sessions) as session:
        session.execute(
            update(Host).where(Host.id == meadow.id).values(updated_at=meadow.updated_at - timedelta(days=31))
        )
    refreshed = contact("198.51.100.9")
    assert refreshed is not None and refreshed.id == meadow.id and refreshed.updated_at > meadow.updated_at
    assert fake.asked[-1] == "first 198.51.100.9"

    # Stale, and the registry now names a smaller network: that is cached, the old answer retired
    # (its row kept, covering nothing), so an address outside the new network is asked about afresh.
    fake.meadow = "198.51.100.0/25"
    with transaction(sessions) as session:
        session.execute(
            update(Host).where(Host.id == meadow.id).values(updated_at=meadow.updated_at - timedelta(days=31))
        )
    smaller = contact("198.51.100.10")
    assert smaller is not None and smaller.id != meadow.id and smaller.network == "198.51.100.0/25"
    with sessions() as session:
        retired = session.get(Host, meadow.id)
        assert retired is not None and (retired.network, retired.range_start, retired.range_end) == (
            "198.51.100.0/24",
            None,
            None,
        )
    assert contact("198.51.100.200") is None and fake.asked[-1] == "first 198.51.100.200"  # now a 404
    assert contact("198.51.100.20") is not None and fake.asked[-1] == "first 198.51.100.200"  # cached

    # No answer (404) is not cached: asked again next time. Outside every bootstrap block: not asked.
    assert contact("192.0.2.1") is None and contact("192.0.2.1") is None
    assert fake.asked[-2:] == ["first 192.0.2.1", "first 192.0.2.1"]
    assert contact("100.64.0.1") is None and fake.asked[-1] == "first 192.0.2.1"
    with sessions() as session:
        rows = session.scalar(select(func.count()).select_from(Host).where(Host.source == "rdap"))
    assert rows == 4
    with sessions() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "hosts.rdap")).all()
        assert [e.details["network"] for e in events] == [
            "198.51.100.0/24",
            "203.0.113.0/25",
            "2001:db8::/32",
            "198.51.100.0/24",
            "198.51.100.0/25",
        ]


def test_rdap_goes_through_the_ssrf_rules_and_a_failure_falls_back_to_the_old_answer(
    settings: Settings, engine: Engine, rdap_servers: tuple[FakeRdap, Path], caplog: pytest.LogCaptureFixture
) -> None:
    fake, bootstrap = rdap_servers
    sessions = make_sessionmaker(engine)
    on = settings.model_copy(update={"trace_rdap": True, "trace_rdap_bootstrap": bootstrap})
    # Loopback is not allowed: the fetcher refuses before connecting.
    assert tracing.contact_for(sessions, on, Trace("198.51.100.7"), None) is None
    assert fake.asked == []
    assert "tracing: no RDAP answer for 198.51.100.7: RDAP http://127.0.0.1:" in caplog.text
    assert "refused: 127.0.0.1 is not a public address" in caplog.text
    # An old cached answer is still given when RDAP cannot be asked.
    allowed = on.model_copy(update={"fetch_allow_networks": ["127.0.0.0/8"]})
    cached = tracing.contact_for(sessions, allowed, Trace("198.51.100.7"), None)
    assert cached is not None
    with transaction(sessions) as session:
        session.execute(update(Host).values(updated_at=cached.updated_at - timedelta(days=90)))
    stale = tracing.contact_for(sessions, on, Trace("198.51.100.7"), None)
    assert stale is not None and stale.id == cached.id and stale.abuse_email == "abuse@meadow.example"
    assert fake.asked == ["first 198.51.100.7"]
