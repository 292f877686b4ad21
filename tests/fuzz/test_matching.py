"""Fuzzing the matching domain's inputs: the HMA-compatible JSON bodies and the policies YAML.

HMA routes answer a malformed body with a 4xx in HMA's shape (``{"message": …}``), never a 500,
and a refused request writes nothing; ``apply_yaml`` raises PolicyError only, and a refused file
writes nothing (every table compared before and after, on SQLite and PostgreSQL).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from fuzzing import database_state, deep_json, deeply_nested, dumps, fuzz, json_values, odd_text, pdqs, wrong_typed
from seawall.auth import service as auth_service
from seawall.auth.permissions import SYSTEM
from seawall.db import make_sessionmaker, transaction
from seawall.lists import service as lists_service
from seawall.matching import policies

#: Tables a request touches whatever its outcome (the key's last use).
BOOKKEEPING = ("api_keys", "rate_limit_windows")


def _state(engine: Engine) -> dict[str, Any]:
    return {k: v for k, v in database_state(engine).items() if k not in BOOKKEEPING}


# ---- HMA JSON bodies --------------------------------------------------------------------------------


@pytest.fixture
def hma(client: TestClient, engine: Engine) -> dict[str, str]:
    """A partner key's headers, and a bank with one content in it."""
    with transaction(make_sessionmaker(engine)) as session:
        key = auth_service.create_api_key(
            session, SYSTEM, name="fuzz-partner", scopes=["lists:read", "lists:write", "match", "hash"]
        )
        lists_service.create_list(session, SYSTEM, name="FUZZ_BANK", kind="hash")
    headers = {"authorization": f"Bearer {key.secret}"}
    added = client.post("/c/bank/FUZZ_BANK/signal", json={"pdq": "f" * 64}, headers=headers)
    assert added.status_code == 200, added.text
    return {**headers, "x-content": str(added.json()["id"])}


ROUTES = [
    ("POST", "/c/banks"),
    ("PUT", "/c/bank/FUZZ_BANK"),
    ("POST", "/c/bank/FUZZ_BANK/signal"),
    ("PUT", "/c/bank/FUZZ_BANK/content/{content}"),
    ("POST", "/m/compare"),
    ("POST", "/c/bank/FUZZ_BANK/content?url=http://127.0.0.1:9/x.png"),
]


@st.composite
def hma_bodies(draw: st.DrawFn) -> bytes:
    nearly: dict[str, Any] = draw(
        st.sampled_from(
            [
                {"name": "NEW_BANK", "enabled": True},
                {"name": "FUZZ_BANK", "enabled_ratio": 0.5},
                {"pdq": "f" * 64, "video_md5": "0" * 32},
                {"disable_until_ts": 1_900_000_000},
                {"pdq": ["f" * 64, "0" * 64]},
                {"metadata": {"content_id": "c1", "json": {"a": 1}}, "note": "benign"},
            ]
        )
    )
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.binary(max_size=64))
    if kind == 1:
        return draw(deep_json).encode()
    if kind == 2:
        return dumps(draw(json_values)).encode("utf-8", errors="surrogatepass")
    if kind == 3:  # numbers at the edges where numbers are expected
        key = next(iter(nearly))
        return json.dumps({key: draw(st.sampled_from([10**400, -(10**400), 10**20, -1, True]))}).encode()
    return dumps(draw(wrong_typed(nearly))).encode("utf-8", errors="surrogatepass")


@fuzz(20)
@example(route=ROUTES[1], body=b'{"enabled_ratio": ' + b"1" * 400 + b"}")
@example(route=ROUTES[3], body=b'{"disable_until_ts": 1e400}')
@example(route=ROUTES[0], body=deeply_nested(3000).encode())
@example(route=ROUTES[4], body=deeply_nested(3000, "{").encode())
@example(route=ROUTES[5], body=b'{"metadata": ' + deeply_nested(3000).encode() + b"}")
@given(route=st.sampled_from(ROUTES), body=hma_bodies())
def test_hma_bodies_get_a_4xx_in_hmas_shape_and_a_refusal_writes_nothing(
    client: TestClient, engine: Engine, hma: dict[str, str], route: tuple[str, str], body: bytes
) -> None:
    method, path = route
    headers = {k: v for k, v in hma.items() if k != "x-content"} | {"content-type": "application/json"}
    before = _state(engine)
    answer = client.request(method, path.format(content=hma["x-content"]), content=body, headers=headers)
    assert answer.status_code < 500, (answer.status_code, answer.text)
    if answer.status_code >= 400:
        assert isinstance(answer.json().get("message"), str), answer.text
        assert _state(engine) == before


# ---- policies YAML -------------------------------------------------------------------------------------

actions = st.lists(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["block", "review", "report", "webhook", "delete"])},
        optional={"queue": st.text(max_size=8), "target": st.sampled_from(["trust-and-safety", ""])},
    ),
    max_size=3,
)
conditions = st.fixed_dictionaries(
    {},
    optional={
        "lists": st.lists(st.text(max_size=8), max_size=2),
        "categories": st.lists(st.sampled_from(["csam", "A"]), max_size=2),
        "max_distance": st.integers(-1, 40),
        "media": st.lists(st.sampled_from(["image", "video"]), max_size=2),
    },
)


@st.composite
def policy_files(draw: st.DrawFn) -> str:
    rules = []
    for i in range(draw(st.integers(0, 3))):
        rule: dict[str, Any] = {"name": draw(st.one_of(st.just(f"rule-{i}"), odd_text)), "actions": draw(actions)}
        if draw(st.booleans()):
            rule["conditions"] = draw(conditions)
        for key in ("position", "shadow", "stop", "enabled", "description"):
            if draw(st.integers(0, 3)) == 0:
                rule[key] = draw(st.one_of(st.integers(-5, 500), st.booleans(), odd_text))
        rules.append(draw(wrong_typed(rule)) if draw(st.integers(0, 3)) == 0 else rule)
    document: Any = {"policies": rules}
    if draw(st.integers(0, 5)) == 0:
        document = draw(wrong_typed(document))
    try:
        text = yaml.safe_dump(document, allow_unicode=True)
    except (yaml.YAMLError, ValueError):
        text = "policies: []"
    if draw(st.integers(0, 3)) == 0:
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(
            st.sampled_from(["\x00", "\t", ": :", "- ", "&a", "*a", "!!python/name:os.system", ""])
        )
    return text


YAML_ATTACKS = [
    "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "policies: [{name: bomb, actions: [{type: block, x: [*b, *b, *b, *b, *b, *b, *b, *b, *b]}]}]",
    "policies: [{name: dated, actions: [{type: review, queue: 2024-01-01}]}]",
    "policies: [{name: far, position: .inf, actions: [{type: block}]}]",
    "policies: [{name: big, position: 99999999999999999999, actions: [{type: block}]}]",
    "policies: [{name: listed, conditions: [lists], actions: [{type: block}]}]",
    "policies: [{name: scalar-actions, actions: block}]",
    "policies: [{name: flat, actions: [block]}]",
    'policies: [{name: "nul\\0name", actions: [{type: block}]}]',
    "policies: [{name: " + "n" * 130 + ", actions: [{type: block}]}]",
    "policies: " + "[" * 3000 + "]" * 3000,
    "policies: [{name: obj, actions: [{type: block}]}]\nx: !!python/object/apply:os.system [echo]",
    "policies: [{name: bools, conditions: {max_distance: true}, actions: [{type: block}]}]",
    "policies: [{name: keys, actions: [{type: block, [1, 2]: x}]}]",
]


@fuzz(30)
@example(text=YAML_ATTACKS[0])
@example(text=YAML_ATTACKS[1])
@example(text=YAML_ATTACKS[2])
@example(text=YAML_ATTACKS[3])
@example(text=YAML_ATTACKS[4])
@example(text=YAML_ATTACKS[5])
@example(text=YAML_ATTACKS[6])
@example(text=YAML_ATTACKS[7])
@example(text=YAML_ATTACKS[8])
@example(text=YAML_ATTACKS[9])
@example(text=YAML_ATTACKS[10])
@example(text=YAML_ATTACKS[11])
@example(text=YAML_ATTACKS[12])
@given(text=st.one_of(policy_files(), st.sampled_from(YAML_ATTACKS), st.text(max_size=40)))
def test_a_policies_file_applies_or_is_refused_with_a_policy_error_and_writes_nothing(
    engine: Engine, text: str
) -> None:
    factory = make_sessionmaker(engine)
    before = _state(engine)
    try:
        with transaction(factory) as session:
            saved = policies.apply_yaml(session, SYSTEM, text)
            names = [p.name for p in saved]
    except policies.PolicyError as exc:
        assert str(exc)
        assert _state(engine) == before
        return
    with factory() as session:  # what was applied reads back as it was given
        assert sorted(p.name for p in policies.list_policies(session)) == sorted(set(names))
        assert all(isinstance(p.position, int) for p in policies.list_policies(session))


@fuzz(3)
@given(pdq=pdqs)
def test_a_valid_policies_file_round_trips_through_dump_yaml(engine: Engine, pdq: str) -> None:
    text = (
        "policies:\n- name: block-known\n  position: 10\n  conditions: {lists: [known], max_distance: 31}\n"
        f"  actions: [{{type: block}}, {{type: webhook, target: t-and-s}}]\n  description: '{pdq}'\n"
    )
    factory = make_sessionmaker(engine)
    with transaction(factory) as session:
        policies.apply_yaml(session, SYSTEM, text)
    with factory() as session:
        dumped = policies.dump_yaml(session)
    with transaction(factory) as session:
        policies.apply_yaml(session, SYSTEM, dumped)
    with factory() as session:
        assert policies.dump_yaml(session) == dumped
        assert yaml.safe_load(dumped)["policies"][0]["description"] == pdq
