"""The core's refusals are whole sentences in the reader's language, naming their fields."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bastion.exceptions import AuthenticationFailed, UserError
from bastion.i18n import use_language
from bastion.mfa.methods import describe_methods
from bastion.mfa.passkeys import TooManyPasskeys
from bastion.policy import check_password
from bastion.users.models import check_new_username, normalize_email
from bastion.users.roles import RoleInUse, UnknownRole


def refusal(call: Callable[..., object], *args: object, **kwargs: object) -> UserError:
    with pytest.raises(UserError) as refused:
        call(*args, **kwargs)
    return refused.value


@pytest.mark.parametrize(
    ("password", "english", "chinese"),
    [
        ("", "The password is empty.", "密码不能为空。"),
        ("short", "The password must have at least 8 characters.", "密码至少需要 8 个字符。"),
        (
            "password123",
            "This password is too common. Choose another one.",
            "此密码过于常见，请换一个。",
        ),
        (
            "alice-in-wonderland",
            "The password must not contain the user name.",
            "密码中不能包含用户名。",
        ),
    ],
)
def test_password_policy_refusals_are_sentences_about_the_password_field(
    password: str, english: str, chinese: str
) -> None:
    error = refusal(check_password, password, 8, username="alice")
    assert error.fields == {"password"}
    assert str(error) == english  # outside a request (the command line): English
    with use_language("zh-CN"):
        assert str(error) == chinese  # the same error, shown to a Chinese page


def test_user_name_and_address_refusals_name_their_field() -> None:
    spaced = refusal(check_new_username, "two words")
    assert spaced.fields == {"username"}
    assert str(spaced) == "The user name must not contain spaces."
    address = refusal(normalize_email, "not-an-address")
    assert address.fields == {"email"}
    with use_language("zh-CN"):
        assert str(spaced) == "用户名中不能包含空格。"
        assert str(address) == "电子邮件地址无效。"


def test_refusals_with_numbers_and_names_keep_them_in_every_language() -> None:
    held = RoleInUse("staff", 2)
    unknown = UnknownRole("ops")
    too_many = TooManyPasskeys()
    assert str(held) == "The role 'staff' is held by 2 users."
    assert str(unknown).startswith("The role 'ops' is not defined.")
    with use_language("zh-CN"):
        assert str(held) == "有 2 位用户拥有角色“staff”。"
        assert str(unknown).startswith("角色“ops”尚未定义。")
        assert str(too_many).startswith("每个账户最多只能有 ")
    assert not too_many.fields


def test_failed_sign_in_and_method_names_are_translated() -> None:
    assert str(AuthenticationFailed()) == "Invalid user name or password."
    assert describe_methods(("pwd", "otp", "mfa")) == "password + authenticator code"
    with use_language("zh-CN"):
        assert str(AuthenticationFailed()) == "用户名或密码错误。"
        assert describe_methods(("pwd", "otp", "mfa")) == "密码 + 身份验证器验证码"
