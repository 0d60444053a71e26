import asyncio
import time


async def boil_water() -> str:
    await asyncio.sleep(3)  # waits: the kettle does the work
    return "water"


async def toast_bread() -> str:
    await asyncio.sleep(1)
    time.sleep(0.5)  # buttering by hand: holds the loop for 0.5 s
    await asyncio.sleep(1)
    return "toast"


async def test_breakfast_is_ready_in_three_seconds(asyncspec_clock):
    with asyncspec_clock.measure() as span:
        kettle = asyncio.create_task(boil_water(), name="kettle")
        toaster = asyncio.create_task(toast_bread(), name="toaster")
        assert await asyncio.gather(kettle, toaster) == ["water", "toast"]
    asyncspec_clock.assert_time(span.elapsed, 3.0, what="breakfast")
