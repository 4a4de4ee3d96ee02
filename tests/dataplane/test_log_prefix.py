"""Log rules' prefix: Felix's default and its specifiers (pure)."""

from __future__ import annotations

import pytest

from dataplane.log_prefix import check, expand


def test_the_default_and_a_plain_prefix_are_used_as_they_are() -> None:
    assert expand("", "billing/allow", "default") == "calico-packet"
    assert expand("my-log", "billing/allow", "default") == "my-log"


def test_specifiers_name_the_kind_the_policy_and_its_tier() -> None:
    template = "%k %n %p %t"
    assert expand(template, "billing/allow", "security") == "np allow billing/allow security"
    assert (
        expand(template, "security.block", "security")
        == "gnp security.block security.block security"
    )
    assert (
        expand(template, "profile kns.billing", "profile kns.billing")
        == "pro kns.billing kns.billing "
    )
    assert expand("%x %%k", "a", "t") == "%x %gnp"  # unknown specifiers stay, as in Felix


def test_only_what_calicos_api_allows_is_accepted() -> None:
    assert check("calico %k: x/y_z-1") == "calico %k: x/y_z-1"
    with pytest.raises(ValueError, match="characters other than"):
        check('bad"; drop')
