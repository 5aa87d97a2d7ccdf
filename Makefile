# ses-dkim-rotator: `make test` and `make demo` do all set-up on a fresh machine.
.PHONY: test demo bench fuzz deny tools build release lint clean

## test: fmt, clippy, cfn-lint, unit + integration tests against local AWS stand-ins
test:
	scripts/testbed.sh scripts/check.sh

## demo: one real rotation through the Lambda Runtime API on the emulators
demo:
	DKIM_TEST_DNS_ZONE=example.com SES_MODEL_CHECK_INTERVAL=1 SES_MODEL_FIRST_LOOK_AFTER=4 scripts/testbed.sh scripts/demo.sh

## bench: every performance figure beside its target, exits 1 on a miss (release build, emulators; WAVE_BENCH_N sets the wave at the quota, default 10,000)
bench:
	scripts/testbed.sh scripts/bench.sh

## fuzz: every cargo-fuzz target for FUZZ_SECONDS each (default 120); make test runs 15 s each
FUZZ_SECONDS ?= 120
fuzz:
	scripts/fuzz.sh $(FUZZ_SECONDS)

## deny: cargo deny (advisories against the vendored RustSec snapshot, licences, bans, sources)
deny:
	scripts/supply_chain.sh

## tools: install the pinned tools the test bed needs (also done by test and demo)
tools:
	scripts/tools.sh >/dev/null

## build: debug build of the Lambda binary
build:
	cargo build --locked

## release: sam validate --lint, then sam build of the arm64 function (cargo lambda, zig); prints the zip size
release:
	scripts/release.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets --locked -- -D warnings

clean:
	cargo clean
