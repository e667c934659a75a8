# Bruso API image: runs against an existing PostgreSQL/PostGIS given by DATABASE_URL
# (or BRUSO_DATABASE_URL), e.g. docker run -e DATABASE_URL=postgresql://user:pw@db:5432/bruso -p 8000:8000 bruso
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv/bruso
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
RUN pip install . && useradd --system --uid 10001 bruso
USER bruso
EXPOSE 8000
# Migrate, then serve. Reference data is mounted at /reference (BRUSO_REFERENCE_DIR) for the loaders.
ENV BRUSO_REFERENCE_DIR=/reference
CMD ["sh", "-c", "bruso db upgrade && exec uvicorn app.main:app --host 0.0.0.0 --port 8000 --proxy-headers"]
