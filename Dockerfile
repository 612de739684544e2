# growpanel-backfill: one image for the CLI, the workers and Flower; built with EXTRAS=sandbox it also
# runs the sandbox (docker-compose's `sandbox` profile). Workers never need the sandbox's web server.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
ARG EXTRAS=""

COPY pyproject.toml README.md alembic.ini ./
COPY models ./models
COPY backfill ./backfill
COPY producers ./producers
COPY workers ./workers
COPY console ./console
COPY demo ./demo
COPY migrations ./migrations
COPY sandbox ./sandbox
COPY examples ./examples
RUN pip install ".${EXTRAS:+[$EXTRAS]}" && useradd --create-home --uid 10001 backfill
USER backfill

ENTRYPOINT ["growpanel-backfill"]
CMD ["--help"]
