from app import parse, run_pipeline


async def test_the_pipeline_takes_the_time_of_its_slowest_path(asyncspec_clock):
    clock = asyncspec_clock
    with clock.measure() as span:
        rows = await run_pipeline(10)
    assert rows == [2 * item for item in range(10)]
    # fetch 0.2 s + the ten parses side by side 0.3 s + store 0.1 s
    clock.assert_time(span.elapsed, 0.6, what="pipeline of 10 items")


async def test_parses_finish_together(asyncspec_clock):
    finished = await asyncspec_clock.finish_times(parse(1), parse(2), parse(3))
    assert finished.results == [2, 4, 6]
    asyncspec_clock.assert_times(finished.times, [0.3, 0.3, 0.3], what="parse finish times")
