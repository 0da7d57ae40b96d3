"""``BASTION_MFA``: who must have a second factor.

``optional``: nobody (everyone may add one); ``admins``: holders of the role ``admin``;
``required``: everyone. A user who must have one and has none gets, after the password, a
session that can do nothing but set one up (``Session.mfa_enrolment``); the token endpoint
gives such a user no tokens until they have enrolled on the web.
"""

from __future__ import annotations

from collections.abc import Iterable

from bastion.settings import MFAPolicy

ADMIN_ROLE = "admin"


def second_factor_required(policy: MFAPolicy, roles: Iterable[str]) -> bool:
    """Whether a user holding ``roles`` must have a second factor under ``policy``."""
    if policy == "required":
        return True
    return policy == "admins" and ADMIN_ROLE in set(roles)
