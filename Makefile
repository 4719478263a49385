# Custodia — the two commands a newcomer needs are `make run` and `make test`.

GO ?= go

.PHONY: run build test lint bench loadtest fuzz clean

run: ## run the server on the embedded default (./custodia-data)
	$(GO) run ./cmd/custodia serve

build:
	$(GO) build -o custodia ./cmd/custodia

test: ## formatting, vet, staticcheck, govulncheck (when reachable), every test on SQLite and PostgreSQL
	bash scripts/test.sh

lint:
	bash scripts/test.sh lint

bench: ## benchmarks, printed as a table (see BENCHMARKS.md)
	bash scripts/bench.sh

loadtest: ## a short load test over HTTPS of a server on a fresh data dir (see scripts/loadtest.sh, BENCHMARKS.md)
	bash scripts/loadtest.sh

fuzz: ## every fuzz target for a minute each (FUZZTIME=10s to shorten); crashers land in testdata/fuzz
	bash scripts/fuzz.sh

clean:
	rm -f custodia
