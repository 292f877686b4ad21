"""Policies: rules from matches to actions, stored in the database, evaluated in order with reasons.

A rule's conditions all have to hold for one match for the rule to fire:
``lists``, ``categories``, ``labels`` (any of), ``signal_types``, ``media`` (any of) and
``max_distance``. Actions are ``block``, ``review`` (``queue``, ``priority``), ``report``
(``authority``) and ``webhook`` (``target``). A shadow rule is evaluated on live traffic and what it
would have done is recorded, but nothing is done. ``stop`` ends evaluation once a rule fires.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from seawall.auth import audit
from seawall.auth.permissions import Principal
from seawall.matching.models import Policy

ACTION_TYPES = ("block", "review", "report", "webhook")
CONDITION_KEYS = ("lists", "categories", "labels", "signal_types", "media", "max_distance")


class PolicyError(ValueError):
    pass


MAX_NAME = 120  # the width of the name column
#: Positions are stored in a 32-bit column.
MIN_POSITION, MAX_POSITION = -(2**31), 2**31 - 1


def _is_setting(value: Any) -> bool:
    """An action's setting is a plain value: nested ones (a YAML alias bomb, say) are refused."""
    return value is None or isinstance(value, str | int | bool) or (isinstance(value, float) and math.isfinite(value))


def _check_text(name: str, what: str, text: str) -> None:
    if "\x00" in text:
        raise PolicyError(f"rule {name!r}: {what} contains a NUL character")


def validate_rule(name: str, conditions: dict[str, Any], actions: list[dict[str, Any]]) -> None:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME or not name.isprintable():
        raise PolicyError(f"a rule's name is 1 to {MAX_NAME} printable characters, not {str(name)[:40]!r}")
    if not isinstance(conditions, dict):
        raise PolicyError(f"rule {name!r}: conditions are a mapping of {', '.join(CONDITION_KEYS)}")
    unknown = set(conditions) - set(CONDITION_KEYS)
    if unknown:
        raise PolicyError(
            f"rule {name!r}: unknown condition(s) {', '.join(sorted(map(str, unknown)))}; "
            f"known: {', '.join(CONDITION_KEYS)}"
        )
    for key in ("lists", "categories", "labels", "signal_types", "media"):
        value = conditions.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise PolicyError(f"rule {name!r}: {key} is a list of strings")
        for text in value or ():
            _check_text(name, key, text)
    distance = conditions.get("max_distance")
    if distance is not None and (not isinstance(distance, int) or isinstance(distance, bool) or distance < 0):
        raise PolicyError(f"rule {name!r}: max_distance is a whole number")
    if not isinstance(actions, list):
        raise PolicyError(f"rule {name!r}: actions are a list")
    if not actions:
        raise PolicyError(f"rule {name!r}: needs at least one action")
    for action in actions:
        if not isinstance(action, dict):
            raise PolicyError(f"rule {name!r}: an action is a mapping with a type, not {str(action)[:40]!r}")
        for key, setting in action.items():
            if not isinstance(key, str) or not _is_setting(setting):
                raise PolicyError(f"rule {name!r}: an action's settings are text, numbers or true/false")
            if isinstance(setting, str):
                _check_text(name, f"action setting {key}", setting)
        kind = action.get("type")
        if kind not in ACTION_TYPES:
            raise PolicyError(f"rule {name!r}: unknown action {kind!r}; actions: {', '.join(ACTION_TYPES)}")
        if kind == "webhook" and not action.get("target"):
            raise PolicyError(f"rule {name!r}: a webhook action names its target")


@dataclass(frozen=True)
class Rule:
    name: str
    position: int
    conditions: dict[str, Any]
    actions: tuple[dict[str, Any], ...]
    shadow: bool = False
    stop: bool = False

    def fires_on(self, match: dict[str, Any], media: str | None) -> bool:
        c = self.conditions
        if "lists" in c and match["list"] not in c["lists"]:
            return False
        if "categories" in c and match.get("category") not in c["categories"]:
            return False
        if "labels" in c and not set(c["labels"]) & set(match.get("labels") or ()):
            return False
        if "signal_types" in c and match["signal_type"] not in c["signal_types"]:
            return False
        if "media" in c and media not in c["media"]:
            return False
        return not ("max_distance" in c and match.get("distance", 0) > c["max_distance"])


@dataclass
class Decision:
    actions: list[dict[str, Any]] = field(default_factory=list)
    shadow_actions: list[dict[str, Any]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    allowlisted: bool = False
    suppressed_lists: list[str] = field(default_factory=list)  # lists whose matches an allowlist covered


def _describe(match: dict[str, Any]) -> str:
    parts = [f"list={match['list']}", f"entry={match['entry_id']}", f"signal={match['signal_type']}"]
    if match.get("category"):
        parts.append(f"category={match['category']}")
    parts.append(f"distance={match.get('distance', 0)}")
    return " ".join(parts)


def decide(
    rules: Sequence[Rule],
    matches: list[dict[str, Any]],
    media: str | None,
    paused: set[int],
    scopes: Mapping[str, frozenset[str] | None] | None = None,
    hidden: Collection[str] = (),
) -> Decision:
    """The actions for these matches, with a reason for every decision taken or withheld.

    An allowlist match suppresses the matches on the lists in its scope (``scopes``: allowlist name
    → the lists it covers, None for every list); matches on other lists are decided as usual.
    ``hidden``: allowlists the caller may not read, which reasons describe without naming them."""
    decision = Decision()
    if not matches:
        return decision
    allowed = [m for m in matches if m.get("allowlist")]
    candidates = [m for m in matches if not m.get("allowlist")]
    if allowed:
        decision.allowlisted = True

        def covered(m: dict[str, Any]) -> bool:
            return any((scope := (scopes or {}).get(a["list"])) is None or m["list"] in scope for a in allowed)

        suppressed = [m for m in candidates if covered(m)]
        candidates = [m for m in candidates if not covered(m)]
        decision.suppressed_lists = sorted({m["list"] for m in suppressed})
        visible = [a for a in allowed if a["list"] not in hidden]
        by = f"allowlisted ({_describe(visible[0])})" if visible else "allowlisted by an operator allowlist"
        if not candidates:
            if not visible and not suppressed:
                return Decision()  # only an allowlist the caller may not read matched: a miss to it
            decision.reasons.append(f"{by}: no action is taken")
            return decision
        if suppressed:
            decision.reasons.append(f"{by}: matches on {', '.join(decision.suppressed_lists)} are not acted on")
    live = []
    for m in candidates:
        if m["entry_id"] in paused:
            decision.reasons.append(f"entry {m['entry_id']} is quarantined: its actions are paused pending review")
        else:
            live.append(m)
    for rule in sorted(rules, key=lambda r: (r.position, r.name)):
        fired = next((m for m in live if rule.fires_on(m, media)), None)
        if fired is None:
            continue
        target = decision.shadow_actions if rule.shadow else decision.actions
        for action in rule.actions:
            tagged = {**action, "rule": rule.name}
            if not any(_same_action(tagged, a) for a in target):
                target.append(tagged)
        mode = "shadow rule" if rule.shadow else "rule"
        kinds = ", ".join(a["type"] for a in rule.actions)
        decision.reasons.append(f"{mode} {rule.name!r} (position {rule.position}) → {kinds}: {_describe(fired)}")
        if rule.stop and not rule.shadow:
            decision.reasons.append(f"rule {rule.name!r} stops evaluation")
            break
    if not decision.actions and not decision.shadow_actions:
        decision.reasons.append("no rule fired")
    return decision


def _same_action(a: dict[str, Any], b: dict[str, Any]) -> bool:
    strip = ("rule",)
    return {k: v for k, v in a.items() if k not in strip} == {k: v for k, v in b.items() if k not in strip}


# ---- storage -------------------------------------------------------------------------------


def load_rules(session: Session) -> list[Rule]:
    rows = session.scalars(select(Policy).where(Policy.enabled.is_(True)).order_by(Policy.position, Policy.name))
    return [Rule(p.name, p.position, dict(p.conditions), tuple(p.actions), p.shadow, p.stop) for p in rows]


def list_policies(session: Session) -> list[Policy]:
    return list(session.scalars(select(Policy).order_by(Policy.position, Policy.name)))


def upsert_policy(
    session: Session,
    actor: Principal,
    *,
    name: str,
    conditions: dict[str, Any],
    actions: list[dict[str, Any]],
    position: int = 100,
    enabled: bool = True,
    shadow: bool = False,
    stop: bool = False,
    description: str = "",
) -> Policy:
    validate_rule(name, conditions, actions)
    if isinstance(position, bool) or not isinstance(position, int) or not MIN_POSITION <= position <= MAX_POSITION:
        raise PolicyError(f"rule {name!r}: position is a whole number from {MIN_POSITION} to {MAX_POSITION}")
    _check_text(name, "the description", description)
    policy = session.scalar(select(Policy).where(Policy.name == name))
    if policy is None:
        policy = Policy(name=name)
        session.add(policy)
    policy.conditions, policy.actions, policy.position = conditions, actions, position
    policy.enabled, policy.shadow, policy.stop, policy.description = enabled, shadow, stop, description
    session.flush()
    audit.record(
        session,
        actor,
        "policy.save",
        "policy",
        policy.id,
        {"name": name, "conditions": conditions, "actions": actions, "shadow": shadow, "position": position},
    )
    return policy


def delete_policy(session: Session, actor: Principal, name: str) -> None:
    policy = session.scalar(select(Policy).where(Policy.name == name))
    if policy is None:
        raise LookupError(f"no policy named {name!r}")
    session.delete(policy)
    audit.record(session, actor, "policy.delete", "policy", policy.id, {"name": name})


def policy_dict(p: Policy) -> dict[str, Any]:
    out: dict[str, Any] = {"name": p.name, "position": p.position}
    if p.description:
        out["description"] = p.description
    for flag in ("enabled", "shadow", "stop"):
        out[flag] = getattr(p, flag)
    out["conditions"] = p.conditions
    out["actions"] = p.actions
    return out


def apply_yaml(session: Session, actor: Principal, text: str, *, replace: bool = True) -> list[Policy]:
    """Load rules from YAML (``policies: [{name, conditions, actions, …}]``); with ``replace`` the
    file is the whole rule set and rules not in it are removed."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise PolicyError(f"not valid YAML: {exc}") from None
    except RecursionError:
        raise PolicyError("not valid YAML: nested too deeply") from None
    items = data.get("policies") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise PolicyError("the file needs a top-level 'policies:' list")
    saved: list[Policy] = []
    names: set[str] = set()
    for i, item in enumerate(items, 1):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise PolicyError(f"policy #{i}: needs a name")
        unknown = set(item) - {"name", "position", "enabled", "shadow", "stop", "conditions", "actions", "description"}
        if unknown:
            raise PolicyError(f"policy {item['name']!r}: unknown field(s) {', '.join(sorted(unknown))}")
        names.add(item["name"])
        saved.append(
            upsert_policy(
                session,
                actor,
                name=item["name"],
                conditions=item.get("conditions") or {},
                actions=item.get("actions") or [],
                position=item.get("position", i * 10),
                enabled=bool(item.get("enabled", True)),
                shadow=bool(item.get("shadow", False)),
                stop=bool(item.get("stop", False)),
                description=str(item.get("description", "")),
            )
        )
    if replace:
        for policy in session.scalars(select(Policy).where(Policy.name.not_in(names or {""}))):
            audit.record(session, actor, "policy.delete", "policy", policy.id, {"name": policy.name})
        session.execute(delete(Policy).where(Policy.name.not_in(names or {""})))
    return saved


def dump_yaml(session: Session) -> str:
    return yaml.safe_dump({"policies": [policy_dict(p) for p in list_policies(session)]}, sort_keys=False)
