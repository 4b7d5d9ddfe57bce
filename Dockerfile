# TrackLayer: one process, one SQLite file under /data, one YAML config.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TRACKLAYER_CONFIG=/etc/tracklayer/tracklayer.yaml \
    TRACKLAYER_DATA=/data \
    TRACKLAYER_LISTEN=0.0.0.0:8080

WORKDIR /src
COPY pyproject.toml README.md ./
COPY tracklayer ./tracklayer
RUN pip install --no-cache-dir . && rm -rf /src

RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin tracklayer \
    && mkdir -p /data /etc/tracklayer \
    && chown tracklayer:tracklayer /data
COPY tracklayer.yaml.example /etc/tracklayer/tracklayer.yaml

USER tracklayer
VOLUME ["/data"]
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"

ENTRYPOINT ["tracklayer", "run"]
