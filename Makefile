# Shortcuts; the README's two commands are scripts/run.sh and scripts/test.sh
# (they need no make on a fresh machine).

.PHONY: run test bench
run:
	./scripts/run.sh
test:
	./scripts/test.sh
bench:
	./scripts/bench.sh
