"""``bastion users reset-mfa NAME``: a user who lost every factor gets back in with the
password alone; their factors go, their sessions end, the audit trail says who did it."""

from __future__ import annotations

from bastion.mfa import totp
from bastion.mfa.service import FactorSummary
from bastion.services import Services
from bastion.users.repository import UserRecord
from tests.cli.conftest import Cli, Library, assert_handled_error, assert_ok


def enrol_totp(library: Library, user: UserRecord) -> list[str]:
    """TOTP on for ``user`` (as the pages do it); returns the recovery codes."""

    async def work(services: Services) -> list[str]:
        enrolment = await services.mfa.begin_totp(user.id, user.username)
        code = totp.code_at(enrolment.secret, totp.current_step(services.clock))
        return await services.mfa.confirm_totp(user.id, code)

    return library.run(work)


def summary(library: Library, user: UserRecord) -> FactorSummary:
    return library.run(lambda services: services.mfa.summary(user.id))


def audit_events(library: Library, user: UserRecord) -> list[str]:
    async def work(services: Services) -> list[str]:
        return [record.event for record in await services.users.list_audit(user_id=user.id)]

    return library.run(work)


def test_reset_mfa_removes_the_factors_and_ends_the_users_sessions(
    cli: Cli, library: Library
) -> None:
    alice = library.add_user("alice")
    bob = library.add_user("bob")
    enrol_totp(library, alice)
    enrol_totp(library, bob)
    library.add_session(alice)
    library.add_session(alice)
    bob_session = library.add_session(bob)

    outcome = cli.invoke("users", "reset-mfa", "ALICE")

    assert_ok(outcome)
    assert outcome.stdout.strip() == "removed TOTP, 10 recovery codes of alice; 2 session(s) ended"
    assert summary(library, alice) == FactorSummary(totp=False, passkeys=0, recovery_codes_left=0)
    assert library.live_sessions(alice) == set()
    # Nobody else is touched.
    assert summary(library, bob).totp is True
    assert library.live_sessions(bob) == {bob_session}
    assert "mfa.reset" in audit_events(library, alice)


def test_reset_mfa_of_a_user_without_factors_says_so(cli: Cli, library: Library) -> None:
    library.add_user("alice")

    outcome = cli.invoke("users", "reset-mfa", "alice")

    assert_ok(outcome)
    assert outcome.stdout.strip() == "removed no second factors of alice; 0 session(s) ended"


def test_reset_mfa_of_an_unknown_user_is_an_error(cli: Cli, library: Library) -> None:
    library.add_user("alice")

    assert_handled_error(cli.invoke("users", "reset-mfa", "nobody"), "no such user: nobody")


def test_reset_mfa_refuses_sessions_it_cannot_reach(cli: Cli, library: Library) -> None:
    alice = library.add_user("alice")
    enrol_totp(library, alice)

    outcome = cli.invoke("users", "reset-mfa", "alice", env={"BASTION_SESSION_STORE": "memory"})

    assert_handled_error(outcome, "out of this command's reach")
    assert summary(library, alice).totp is True


def test_reset_mfa_is_in_the_help(cli: Cli) -> None:
    outcome = cli.script("users", "--help")

    assert_ok(outcome)
    assert "reset-mfa" in outcome.stdout
