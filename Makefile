# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The demo's ports: `make demo PORT=8100 SANDBOX_PORT=8543` (the sandbox's redirect URIs follow).
PORT ?= 8000
SANDBOX_PORT ?= 8443

.PHONY: install demo test lint pytest openapi clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

install: $(STAMP)

# The demo's keyset (var/demo-keyset.json, generated on first run) is the default outside production.
demo: install
	$(BIN)/python manage.py demo --port $(PORT) --sandbox-port $(SANDBOX_PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/python manage.py makemigrations --check --dry-run --skip-checks

pytest: install
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint pytest

# The service API's OpenAPI document, committed so that every change to it is reviewed
# (tests/tokens/service_api/test_api_schema.py fails while the served document differs from this copy).
openapi: install
	DJANGO_SETTINGS_MODULE=tests.settings $(BIN)/python -c 'import django, json; django.setup(); \
	from tokens.service_api.api import api; print(json.dumps(api.get_openapi_schema(), indent=2, sort_keys=True))' > docs/openapi.json

clean:
	rm -rf $(VENV) var/
