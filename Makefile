.PHONY: run test lint venv bench

venv:
	@scripts/ensure_venv.sh

# The whole system on the embedded default: web, task worker, scheduler and the sandbox PSPs.
run: venv
	.venv/bin/python manage.py run_all

# The whole suite on PostgreSQL + Redis, then the end-to-end scenarios on the embedded SQLite default.
test: venv
	@.venv/bin/python scripts/check_services.py
	.venv/bin/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)
	.venv/bin/python scripts/run_embedded_scenarios.py

lint: venv
	.venv/bin/ruff check .
	.venv/bin/lint-imports

bench: venv
	.venv/bin/python -m bench
