"""Fixtures shared by the harness's own tests."""

from tests.fixtures.sshd import other_sshd, sshd

__all__ = ["other_sshd", "sshd"]
