"""A value's text/plain before IPython is up: the kernel's own printer
(kernel/python/pretty.c) lays values out as IPython's pretty printer does
under ipykernel. Ground truth is IPython.lib.pretty itself, run in the same
kernel on the same objects, after the kernel has shown them natively."""
import json

import pytest

from kernel_util import execute, of_type, stdout_of

pytest.importorskip("IPython")

# Values made in the kernel from a seed: nested containers of every size
# around the 79-column line, the 1000-item cut, classes, functions, plain
# objects, multi-line reprs, exceptions, the collections types, cycles.
MAKE = r'''
import collections, os, random, types

class Plain:
    pass

class Lines:
    def __repr__(self):
        return "first line\n  second line\nthird"

class Shown:
    def __repr__(self):
        return "Shown<" + "s" * 30 + ">"

class Meta(type):
    def __repr__(cls):
        return "<meta %s>" % cls.__name__

class WithMeta(metaclass=Meta):
    pass

class MyError(Exception):
    pass

class MyList(list):
    pass

def user_function(a, b=2, *args, key=None, **kw):
    pass

def hashable(x):
    try:
        hash(x)
    except TypeError:
        return False
    return True

def make(rng, depth):
    k = rng.randrange(22 if depth < 4 else 9)
    if k == 0: return rng.randrange(-10**rng.randrange(1, 25), 10**rng.randrange(1, 25))
    if k == 1: return rng.random() * 10 ** rng.randrange(-5, 8)
    if k == 2: return "".join(rng.choice("ab cd'\"\\\né") for _ in range(rng.randrange(0, 60)))
    if k == 3: return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
    if k == 4: return rng.choice([None, True, False, Ellipsis, NotImplemented, 0.5, -1])
    if k == 5: return rng.choice([int, dict, collections.OrderedDict, Plain, Lines, WithMeta,
                                  MyError, type, object, types.SimpleNamespace])
    if k == 6: return rng.choice([len, user_function, lambda x, *y: x, print, [].append,
                                  str.join, os.path.join, make])
    if k == 7: return rng.choice([Plain(), Lines(), Shown(), WithMeta()])
    if k == 8: return rng.choice([ValueError("bad", 3), MyError(), KeyError("k" * 40),
                                  MyError("x" * 50, ["y" * 30])])
    n = rng.choice([0, 1, 2, 3, rng.randrange(4, 12), rng.randrange(12, 40)])
    kids = [make(rng, depth + 1) for _ in range(n)]
    if k in (9, 10): return kids
    if k == 11: return tuple(kids)
    if k == 12: return MyList(kids)
    if k in (13, 14):
        return {rng.choice([rng.randrange(100), "key%d" % rng.randrange(100), (1, 2)]): v
                for v in kids}
    if k == 15: return set(x for x in kids if hashable(x))
    if k == 16: return frozenset(x for x in kids if isinstance(x, (int, str)))
    if k == 17: return collections.deque(kids, maxlen=rng.choice([None, 50]))
    if k == 18: return collections.OrderedDict(("k%d" % i, v) for i, v in enumerate(kids))
    if k == 19: return collections.defaultdict(rng.choice([list, int, None]),
                                               {i: v for i, v in enumerate(kids)})
    if k == 20: return collections.UserList(kids)
    return types.SimpleNamespace(**{"a%d" % i: v for i, v in enumerate(kids[:6])})

rng = random.Random(SEED)
values = [make(rng, 0) for _ in range(COUNT)]
cyclic = [1, 2]; cyclic.append(cyclic)
cyclic_d = {"a": 1}; cyclic_d["self"] = cyclic_d
values += [list(range(1005)), {i: i for i in range(1003)}, set(range(1001)), tuple(range(999)),
           [list(range(1002))], cyclic, cyclic_d, [cyclic, cyclic_d], os.environ,
           type.__dict__["mro"], types.MappingProxyType({"x": list(range(30))}),
           collections.Counter("abracadabra" * 3), collections.Counter(),
           [[1, 2], [3, 4]] * 8, {"aaaaaaaaaaaaaaaaaaaa": list(range(25))},
           "line one\n" * 12, [Lines(), Lines()], {"k": Lines()}, (1,), (), [], {}, set(),
           frozenset(), frozenset(range(30)), [set([3, 1, 2]), {"b", "a", 1}]]
'''


def kernel_texts(kc, code):
    reply, msgs = execute(kc, code, timeout=120)
    assert reply["content"]["status"] == "ok", reply["content"]
    return msgs


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_layout_is_ipythons(fresh_kernel, seed):
    km, kc = fresh_kernel
    kernel_texts(kc, MAKE.replace("SEED", str(seed)).replace("COUNT", "400"))
    msgs = kernel_texts(kc, "for v in values:\n    display(v)\n"
                            "import sys; print('IPython' in sys.modules)")
    ours = [m["content"]["data"]["text/plain"] for m in of_type(msgs, "display_data")]
    assert stdout_of(msgs) == "False\n"  # the kernel's own printer, not IPython's
    msgs = kernel_texts(kc, "import json, IPython, IPython.lib.pretty as P\n"
                            "print(json.dumps([IPython.version_info[0]] + "
                            "[P.pretty(v, max_width=79, max_seq_length=1000) for v in values]))")
    major, *theirs = json.loads(stdout_of(msgs))
    assert len(ours) == len(theirs) > 400
    # IPython 8 shows a Counter in insertion order, 9 by count (as here).
    differ = [(i, a, b) for i, (a, b) in enumerate(zip(ours, theirs))
              if a != b and not (major < 9 and a.startswith("Counter("))]
    assert differ == [], "\n\n".join("#%d ours:\n%s\nIPython's:\n%s" % d for d in differ[:3])
    assert sum("\n" in t for t in ours) > 40  # the layouts were put to the test


def test_after_the_cut_the_rest_is_not_formatted(kernel):
    """A million-item list shows its first 1000 items, as under ipykernel,
    and the items past the cut are never asked for their repr."""
    km, kc = kernel
    msgs = kernel_texts(kc, "asked = []\nclass Late:\n    def __repr__(self):\n"
                            "        asked.append(1)\n        return 'late'\n"
                            "big = list(range(1000)) + [Late() for _ in range(10**6 - 1000)]\n"
                            "display(big)\nprint(len(asked))")
    [d] = of_type(msgs, "display_data")
    text = d["content"]["data"]["text/plain"]
    assert text == "[" + ",\n ".join(map(str, range(1000))) + ",\n ...]"
    assert stdout_of(msgs) == "0\n"


def test_a_failing_repr_shows_its_error_and_the_cell_succeeds(kernel):
    """As under ipykernel: the error of a value's failing __repr__ is shown
    as an error output, no value is shown, and the cell's reply is ok (so
    Run All goes on); the value is still the cell's `_`."""
    km, kc = kernel
    reply, msgs = execute(kc, "class Bad:\n    def __repr__(self):\n"
                              "        raise RuntimeError('no repr')\n[1, Bad()]")
    assert reply["content"]["status"] == "ok"
    [err] = of_type(msgs, "error")
    assert (err["content"]["ename"], err["content"]["evalue"]) == ("RuntimeError", "no repr")
    assert "raise RuntimeError('no repr')" in "".join(err["content"]["traceback"])
    assert of_type(msgs, "execute_result") == []
    msgs = kernel_texts(kc, "print(type(_[1]).__name__)")
    assert stdout_of(msgs) == "Bad\n"
