.PHONY: run test check install bench

run:        ## install (if needed) and start the service on :8000
	scripts/serve

test:       ## install (if needed), lint, type check and run every test
	scripts/test

check:      ## lint and type check only
	scripts/check

install:    ## create .venv with the pinned development dependencies
	scripts/install --dev

bench:      ## the side-by-side benchmarks (starts its own server)
	scripts/install --dev
	.venv/bin/python -m bench.large_tensor
	.venv/bin/python -m bench.oip_large_tensor
