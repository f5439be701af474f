# One image for web, worker and beat (docker-compose.yml picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_STATIC_MANIFEST=true \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
RUN useradd --create-home --uid 1000 syncstore

COPY pyproject.toml README.md ./
COPY config ./config
COPY core ./core
COPY inventory ./inventory
COPY erp_mapping ./erp_mapping
COPY channels_sync ./channels_sync
RUN pip install -e .

COPY . .
# collectstatic needs settings, not secrets: throwaway values for the build only.
RUN DJANGO_SECRET_KEY=build-only FIELD_ENCRYPTION_KEYS=YnVpbGQtb25seS1rZXktMzItYnl0ZXMtbG9uZy4uLi4= \
    python manage.py collectstatic --noinput --verbosity 0 \
    && mkdir -p /app/var/erp-archive \
    && chown -R syncstore /app

USER syncstore
EXPOSE 8000
CMD ["gunicorn", "--config", "config/gunicorn.py", "--bind", "0.0.0.0:8000", "--workers", "3"]
