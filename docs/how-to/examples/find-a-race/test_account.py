import asyncio

import pytest
from app import Account, withdraw


@pytest.mark.asyncspec(schedules=200)
async def test_two_withdrawals_never_overdraw():
    account = Account(balance=100)
    approved = await asyncio.gather(withdraw(account, 50), withdraw(account, 80))
    assert approved == [True, False]
    assert account.balance == 50
