"""Functions profiled by test_lprun.py, by pyrometer and by line_profiler alike.

The tests read line numbers from the code objects (co_firstlineno), so
functions can move; keep loop()'s four-line body as it is.
"""
import asyncio
import functools
import threading
import time


def loop(n):
    total = 0
    for i in range(n):
        total += i
    return total


def branches(n):
    evens = odds = 0
    for i in range(n):
        if i % 2 == 0:
            evens += 1
        elif i % 3 == 0:
            odds += 2
        else:
            odds += 1
    return evens, odds


def early(x):
    if x < 0:
        return "neg"
    if x == 0:
        return "zero"
    y = x * 2
    return y


def call_early():
    return [early(v) for v in (-1, 0, 1, 2, -5)]


def raises(n):
    out = []
    for i in range(n):
        try:
            if i % 3 == 0:
                raise ValueError(i)
            out.append(i)
        except ValueError:
            out.append(-i)
        finally:
            out.append(0)
    return out


def boom(x):
    y = x + 1
    raise KeyError(y)


def catch_boom():
    try:
        boom(1)
    except KeyError:
        return "caught"


def gen(n):
    for i in range(n):
        x = i * 2
        yield x
    yield -1


def consume(n):
    g = gen(n)
    first = next(g)
    rest = [v for v in g]
    return first, rest


def echo():
    received = []
    while True:
        v = yield len(received)
        if v is None:
            break
        received.append(v)
    return received


def drive_echo():
    e = echo()
    next(e)
    for i in range(5):
        e.send(i)
    try:
        e.send(None)
    except StopIteration as stop:
        return stop.value


async def coro(n):
    acc = 0
    for i in range(n):
        await asyncio.sleep(0)
        acc += i
    return acc


async def coro_main():
    a, b = await asyncio.gather(coro(3), coro(4))
    return a + b


def run_coro():
    return asyncio.run(coro_main())


def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def threaded_work(n):
    s = 0
    for i in range(n):
        s += i * i
    return s


def in_thread(n):
    out = []
    t = threading.Thread(target=lambda: out.append(threaded_work(n)))
    t.start()
    t.join()
    return out[0]


def long_case(n):
    total = 0.0
    for i in range(n):
        total += i ** 0.5
    time.sleep(0.02)
    s = sum(range(n))
    return total + s


# ---- -f kinds --------------------------------------------------------------

class Shape:
    sides = 0

    def __init__(self, size):
        self._size = size

    def area(self):
        s = self._size
        return s * s

    @classmethod
    def unit(cls):
        obj = cls(1)
        return obj

    @staticmethod
    def describe(n):
        word = "shape"
        return f"{word} with {n} sides"

    @property
    def size(self):
        value = self._size
        return value

    @size.setter
    def size(self, value):
        checked = int(value)
        self._size = checked


def make_adder(k):
    def add(x):
        result = x + k
        return result
    return add


def outer(n):
    def inner(v):
        doubled = v * 2
        return doubled
    return [inner(i) for i in range(n)]


def logged(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        result = func(*args, **kwargs)
        return result
    return wrapper


@logged
def decorated(x):
    y = x + 1
    z = y * 2
    return z


class Counter:
    def __init__(self):
        self.n = 0

    def __call__(self, step):
        self.n += step
        return self.n
