from app import handle, start


async def test_start_loads_the_cache():
    cache = await start()
    assert cache["greeting"] == "hello"


async def test_handle_returns_a_checksum():
    assert await handle("hello") == "0005"
