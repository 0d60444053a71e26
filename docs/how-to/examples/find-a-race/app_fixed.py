"""The same account; a lock makes check-then-debit one step for other withdrawals."""

import asyncio


class Account:
    def __init__(self, balance: int) -> None:
        self.balance = balance
        self.lock = asyncio.Lock()


async def withdraw(account: Account, amount: int) -> bool:
    if amount > 60:
        await asyncio.sleep(0.01)  # large amounts go to the fraud check first
    async with account.lock:
        if account.balance >= amount:
            await asyncio.sleep(0.01)  # write the ledger entry
            account.balance -= amount
            return True
    return False
