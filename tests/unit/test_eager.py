"""``run_first_step``: a coroutine run to its first suspension continues exactly as a task would."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.app.eager import run_first_step


async def _plain(value: int) -> int:
    return value * 2


async def test_a_coroutine_that_never_suspends_finishes_in_its_first_step() -> None:
    before = len(asyncio.all_tasks())
    finished, result = run_first_step(_plain(21))
    assert (finished, result) == (True, 42)
    assert len(asyncio.all_tasks()) == before


async def test_a_suspended_coroutine_continues_with_what_it_waited_for() -> None:
    trace: list[str] = []
    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def waits() -> str:
        trace.append("before")
        got = await gate
        await asyncio.sleep(0)  # a bare yield to the loop after the future
        trace.append(f"after {got}")
        return got.upper()

    finished, rest = run_first_step(waits())
    assert not finished and trace == ["before"]
    task = asyncio.ensure_future(rest)
    await asyncio.sleep(0)
    assert not task.done()
    gate.set_result("open")
    assert await task == "OPEN"
    assert trace == ["before", "after open"]


async def test_exceptions_come_out_where_awaiting_would_raise_them() -> None:
    async def fails_at_once() -> None:
        raise ValueError("first step")

    with pytest.raises(ValueError, match="first step"):
        run_first_step(fails_at_once())

    async def fails_later() -> None:
        await asyncio.sleep(0)
        raise KeyError("later")

    finished, rest = run_first_step(fails_later())
    assert not finished
    with pytest.raises(KeyError, match="later"):
        await rest


async def test_cancelling_the_continuation_cancels_the_coroutine_inside() -> None:
    cleaned: list[str] = []
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def blocked() -> None:
        try:
            await never
        finally:
            cleaned.append("finally ran")

    finished, rest = run_first_step(blocked())
    assert not finished
    task = asyncio.ensure_future(rest)
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["finally ran"]
    assert never.cancelled()  # the future it waited on was cancelled as a task would cancel it
