# pyrometer - the two commands of the README, and their parts.
#   make tour   installs what is missing, builds, installs, and runs
#               share/examples/tour.ipynb through the kernel -> out/
#   make test   installs what is missing, builds, installs, and runs the
#               whole suite (C unit tests, protocol and magic tests, and the
#               suite again against an AddressSanitizer+UBSan build), then in
#               the Debian forky root (made the first time, reused after):
#               the whole suite on Python 3.14, the protocol and magic tests
#               on 3.13 and 3.15 (builds in build-py3.13 ... build-py3.15)
#   make bench  the benchmarks of tests/bench: the 3.11 tables on the host,
#               then the 3.14 tables in the forky root
PYTHON   := /usr/bin/python3
BUILD    := build
ASAN     := build-asan
# The forky root (tests/platforms/forky_root.sh) and its Pythons (for make clean).
FORKY_ROOT := tests/platforms/forky_root.sh
FORKY_PYS  := 3.14 3.13 3.15
PREFIX   := /usr/local
PYTEST   := $(PYTHON) -m pytest -p no:cacheprovider

DEB_BUILD := gcc libstdc++-12-dev meson ninja-build pkg-config python3-dev libzmq3-dev libjansson-dev \
             libsodium-dev libsqlite3-dev python3-mesonpy python3-venv
DEB_RUN   := jupyter-client python3-jupyter-client jupyter-console python3-nbclient \
             jupyter-notebook python3-nbconvert python3-jedi python3-pygments \
             python3-matplotlib python3-pandas python3-ipython
DEB_TEST  := python3-pytest python3-jupyter-kernel-test python3-numpy python3-psutil python3-zmq \
             iproute2 chromium chromium-driver python3-selenium clang-format dpkg-dev \
             clang libclang-rt-14-dev debootstrap
DEB_REF   := python3-ipykernel python3-line-profiler python3-memory-profiler
DEB_ALL   := $(DEB_BUILD) $(DEB_RUN) $(DEB_TEST) $(DEB_REF)

.PHONY: all deps build install asan-build forky-root test tour bench clean

all: build

# apt-get only when something is missing, so a ready machine starts at once.
deps:
	@missing=$$(for p in $(DEB_ALL); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	    | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing:" $$missing; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

$(BUILD)/build.ninja:
	meson setup $(BUILD) --prefix=$(PREFIX) --werror

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

install: build
	meson install -C $(BUILD) --quiet

$(ASAN)/build.ninja:
	meson setup $(ASAN) -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug --werror

asan-build: deps $(ASAN)/build.ninja
	ninja -C $(ASAN)

# Every stage, then one closing line "N passed, N failed" (tests/run_suite.py).
# The sanitizer build runs the C unit tests and the protocol suite with the
# kernel itself under ASan+UBSan.
# The Debian forky root with Python 3.13-3.15, JupyterLab 4 and Notebook 7,
# outside the work tree; about 5-10 minutes the first time, then reused.
# (run_suite.py --forky makes it too, counting a failure if it cannot.)
forky-root:
	$(FORKY_ROOT) make

# The host's stages, then the forky root's: run_suite.py makes the root when
# it is missing, builds each of its Pythons (run_suite.py FORKY) in it
# (tests/platforms/forky_build.sh) and ends with the one closing line.
test: install asan-build
	$(PYTHON) tests/run_suite.py $(CURDIR)/$(BUILD) $(CURDIR)/$(ASAN) --forky

tour: install
	$(PYTHON) share/examples/run_tour.py out

# The 3.11 tables on the host, then the 3.14 tables in the forky root
# (the kernel and profilers built for 3.14 against ipykernel 7.2, cProfile,
# line_profiler 5.0.2 and memory_profiler of that Python).
bench: install
	PYROMETER_BUILD=$(CURDIR)/$(BUILD) $(PYTHON) tests/bench/run_all.py
	tests/platforms/forky_build.sh 3.14
	$(FORKY_ROOT) run env PYROMETER_BUILD=$(CURDIR)/build-py3.14 python3.14 tests/bench/run_all.py --forky

clean:
	rm -rf $(BUILD) $(ASAN) build-fuzz $(addprefix build-py,$(FORKY_PYS)) out
