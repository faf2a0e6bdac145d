.PHONY: run test test-quick container-test check install bench

run:        ## install (if needed) and start the service on :8000
	scripts/serve

test:       ## install (if needed), lint, type check and run every test
	scripts/test

test-quick: ## install (if needed) and run each layer's own tests, no server process, on two processes (about 50 s)
	scripts/test-quick

container-test:  ## build the image with buildah and smoke-test it with podman (root; installs them)
	scripts/container-test

check:      ## lint and type check only
	scripts/check

install:    ## create .venv with the pinned development dependencies
	scripts/install --dev

bench:      ## the side-by-side benchmarks (starts its own server)
	scripts/install --dev
	.venv/bin/python -m bench.throughput
	.venv/bin/python -m bench.large_tensor
	.venv/bin/python -m bench.oip_large_tensor
	.venv/bin/python -m bench.loop_latency

.PHONY: fuzz load memory

fuzz:       ## schema fuzzing against the real server over HTTP (>= 10,000 cases)
	scripts/install --dev
	.venv/bin/python -m bench.fuzz --max-examples 2500

load:       ## 30 s at twice the saturation rate against the real server
	scripts/install --dev
	.venv/bin/python -m bench.load --seconds 30

memory:     ## RSS over 100,000 mixed valid and invalid requests after warm-up
	scripts/install --dev
	.venv/bin/python -m bench.memory --requests 100000
