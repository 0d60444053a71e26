"""Exploring schedules without pytest: a check-then-act race on an account."""

import asyncio

from pytest_asyncspec import explore, replay


async def main() -> None:
    account = {"balance": 100}  # fresh state for every schedule

    async def withdraw(amount: int, checks: int) -> None:
        for _ in range(checks):  # validate the request: `checks` steps
            await asyncio.sleep(0)
        if account["balance"] >= amount:  # check ...
            await asyncio.sleep(0)  # write the ledger entry
            account["balance"] -= amount  # ... then act, after a suspension

    await asyncio.gather(withdraw(80, checks=0), withdraw(80, checks=2))
    assert account["balance"] >= 0, f"overdrawn: {account['balance']}"


outcome = explore(main, schedules=200, seed=7)
print(f"{outcome.schedules} schedules run, {outcome.distinct} distinct orders")
failure = outcome.failure
if failure is not None:
    print(f"failed: {failure.error!r}")
    print(f"deviations from stock order: {len(failure.deviations)}")
    assert failure.token is not None
    token = failure.token.encode()  # one shell word: keep it in a bug report
    print(f"replay token: {token}")
    again = replay(main, token)  # the same schedule, from the text alone
    print(f"replayed: {again.error!r}" if again else "replayed: passed")
