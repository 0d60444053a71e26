"""An account that two withdrawals can overdraw."""

import asyncio


class Account:
    def __init__(self, balance: int) -> None:
        self.balance = balance


async def withdraw(account: Account, amount: int) -> bool:
    if amount > 60:
        await asyncio.sleep(0.01)  # large amounts go to the fraud check first
    if account.balance >= amount:
        await asyncio.sleep(0.01)  # write the ledger entry
        account.balance -= amount
        return True
    return False
