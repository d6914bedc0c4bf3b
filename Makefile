# pyrometer - the two commands of the README, and their parts.
#   make tour   installs what is missing, builds, installs, and runs
#               share/examples/tour.ipynb through the kernel -> out/
#   make test   installs what is missing, builds, installs, and runs the
#               whole suite (C unit tests, protocol and magic tests, and the
#               suite again against an AddressSanitizer+UBSan build)
PYTHON   := /usr/bin/python3
BUILD    := build
ASAN     := build-asan
PREFIX   := /usr/local
PYTEST   := $(PYTHON) -m pytest -p no:cacheprovider

DEB_BUILD := gcc libstdc++-12-dev meson ninja-build pkg-config python3-dev libzmq3-dev libjansson-dev \
             libssl-dev libsqlite3-dev
DEB_RUN   := jupyter-client python3-jupyter-client jupyter-console python3-nbclient \
             jupyter-notebook python3-nbconvert python3-jedi python3-pygments \
             python3-matplotlib python3-pandas python3-ipython
DEB_TEST  := python3-pytest python3-jupyter-kernel-test python3-numpy python3-psutil python3-zmq \
             iproute2 chromium chromium-driver python3-selenium clang-format dpkg-dev \
             clang libclang-rt-14-dev
DEB_REF   := python3-ipykernel python3-line-profiler python3-memory-profiler
DEB_ALL   := $(DEB_BUILD) $(DEB_RUN) $(DEB_TEST) $(DEB_REF)

.PHONY: all deps build install asan-build test tour bench clean

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
test: install asan-build
	$(PYTHON) tests/run_suite.py $(CURDIR)/$(BUILD) $(CURDIR)/$(ASAN)

tour: install
	$(PYTHON) share/examples/run_tour.py out

bench: install
	PYROMETER_BUILD=$(CURDIR)/$(BUILD) $(PYTHON) tests/bench/run_all.py

clean:
	rm -rf $(BUILD) $(ASAN) build-fuzz out
