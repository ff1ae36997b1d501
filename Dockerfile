# The bot, installed as `make venv` does (a .venv with `pip install -e .[...]`, without the
# test tools and Ray, which the bot never imports), migrated, then `python -m bot`. Non-root; SIGTERM (docker stop) ends it cleanly with exit 0.
#
#   docker build -t photo-search .
#   docker run --rm -e TELEGRAM_BOT_TOKEN=... -e ADMIN_IDS=... \
#       -v /srv/photos:/photos:ro -v photo-search-data:/data photo-search
#
# Index the photos once before (or from inside) the container:
#   docker run --rm -v /srv/photos:/photos:ro -v photo-search-data:/data photo-search \
#       .venv/bin/python -m engine index /photos --index /data/index
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PHOTOS_DIR=/photos \
    INDEX_DIR=/data/index \
    DATA_DIR=/data

RUN useradd --create-home --uid 10001 app \
    && mkdir -p /app /data /photos \
    && chown app:app /app /data
WORKDIR /app
USER app

# Dependencies first (cached layer): the Makefile's install path, minus the dev extra.
COPY --chown=app:app pyproject.toml README.md ./
COPY --chown=app:app engine engine
COPY --chown=app:app training training
COPY --chown=app:app bot bot
RUN python -m venv .venv \
    && .venv/bin/python -m pip install --quiet --upgrade pip \
    && .venv/bin/python -m pip install --quiet -e '.[scale]'
COPY --chown=app:app alembic.ini ./
COPY --chown=app:app migrations migrations

VOLUME ["/data"]
STOPSIGNAL SIGTERM
# exec: python is PID 1 and receives SIGTERM itself (the bot handles it: finishes what is in
# flight, exits 0). `python -m bot` would migrate too; doing it first makes a failed
# migration stop the container before the bot connects to Telegram.
CMD ["sh", "-c", ".venv/bin/python -m bot migrate && exec .venv/bin/python -m bot"]
