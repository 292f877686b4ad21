"""Shapes of the auth API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    username: str
    display_name: str
    role: str
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None


class UserCreate(BaseModel):
    username: str = Field(min_length=1, max_length=80)
    role: str
    display_name: str = ""
    password: str | None = Field(None, description="Generated when absent.")


class UserCreated(UserOut):
    password: str = Field(description="Shown once.")


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    prefix: str
    scopes: list[str]
    lists: list[str] | None
    created_by: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=120)
    scopes: list[str] = Field(min_length=1)
    lists: list[str] | None = None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The secret, shown once. Send it as 'Authorization: Bearer <key>'.")


class Me(BaseModel):
    kind: str
    name: str
    role: str | None
    scopes: list[str]
    lists: list[str] | None


class ChainStatus(BaseModel):
    ok: bool
    checked: int
    problem: str | None
    seq: int | None
    message: str
