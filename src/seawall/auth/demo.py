"""Demo data of the auth domain: an admin account."""

from __future__ import annotations

from rich.console import Console
from sqlalchemy import select
from sqlalchemy.orm import Session

from seawall.auth import service as auth_service
from seawall.auth.models import User
from seawall.auth.permissions import cli_principal


def seed_demo(session: Session, console: Console) -> None:
    if session.scalar(select(User.id).where(User.username == "admin")) is not None:
        console.print("demo: user 'admin' exists already")
        return
    _, password = auth_service.create_user(
        session, cli_principal(), username="admin", role="admin", display_name="Demo admin"
    )
    console.print(f"demo: console login  [bold]admin[/bold] / [bold]{password}[/bold]")
