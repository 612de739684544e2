# growpanel-backfill: one image for the CLI, the workers, Flower and the sandbox.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md alembic.ini ./
COPY backfill ./backfill
COPY producers ./producers
COPY workers ./workers
COPY models ./models
COPY migrations ./migrations
COPY sandbox ./sandbox
COPY examples ./examples
RUN pip install . && useradd --create-home --uid 10001 backfill
USER backfill

ENTRYPOINT ["growpanel-backfill"]
CMD ["--help"]
